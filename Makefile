# Two entry points (see README): `make run` installs everything into .venv and runs the embedded
# default search; `make test` installs everything and runs the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch goes in first and pinned: left to choose freely, pip would pull a multi-GB CUDA build here.
# On a GPU machine, pip's PyPI torch for Linux is the CUDA build; or set TORCH to another wheel.
TORCH ?= torch==2.13.0
SPACE ?= minilm
ARGS ?=
# The floor is pyproject's requires-python: an older $(PYTHON) stops before any venv is made.
FLOOR = $(shell sed -n 's/^requires-python = ">=\([0-9.]*\)"/\1/p' pyproject.toml)
FOUND = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
TOO_OLD = $(shell $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] >= tuple(map(int, "$(FLOOR)".split("."))))' 2>/dev/null && echo yes)

.PHONY: install run test
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(if $(TOO_OLD),$(error $(PYTHON) is Python $(FOUND); rerank-search needs $(FLOOR) or newer: make PYTHON=python$(FLOOR)))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bm25,test,bench]"
	touch $@

run: install
	$(PY) -m search.run --space $(SPACE) --output-json runs/$(SPACE)-best.json $(ARGS)

test: install
	$(PY) -m pytest -q tests
