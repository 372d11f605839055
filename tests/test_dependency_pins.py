"""The pinned dependencies resolve, from PyPI, for every Python that the README, the Dockerfile and
cluster.yaml name, and not for 3.10: a pin that excludes one of them fails here, not in an image build.

Wheels only (pip resolves for another Python that way) and --dry-run: pip reads each wheel's
metadata file, never the wheels themselves. Packages released as sdists only (pyserini) are
checked through the index's Requires-Python, and their own requirements join the wheel resolution."""
import importlib.metadata
import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = ("bm25", "postgres")            # what the image and the AMI setup install
SDIST_ONLY = {"pyserini"}                # no wheels on PyPI: pip cannot resolve them for another Python
UBUNTU_PYTHON = {"22.04": "3.10", "24.04": "3.12"}   # each release's python3
# manylinux tags a glibc-2.35 system (Ubuntu 22.04 and newer) accepts, newest first
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(35, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]


def named_pythons() -> dict[str, str]:
    """source -> Python version, as each file states it."""
    readme = re.search(r"`python3` \((3\.\d+)\+", (ROOT / "README.md").read_text())
    docker = re.search(r"\bpython(3\.\d+) -m venv", (ROOT / "cluster/Dockerfile").read_text())
    setup = "\n".join(yaml.safe_load((ROOT / "cluster/cluster.yaml").read_text())["setup_commands"])
    launcher = re.search(r"\bpython(3\.\d+) -m venv", setup)
    found = {"README.md": readme, "cluster/Dockerfile": docker, "cluster/cluster.yaml": launcher}
    assert all(found.values()), {k: bool(v) for k, v in found.items()}
    return {source: match.group(1) for source, match in found.items()}


def requirements() -> list[Requirement]:
    names = PYPROJECT["dependencies"] + [r for extra in EXTRAS for r in PYPROJECT["optional-dependencies"][extra]]
    return [Requirement(r) for r in names]


def pip(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    # isolated: this machine's pip config (local indexes, caps) must not decide what PyPI offers
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    return subprocess.run([sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def offered_versions(name: str, python: str) -> list[str]:
    """Versions of `name` whose Requires-Python admits `python`, as PyPI's index lists them."""
    result = pip("index", "versions", name, "--python-version", python, timeout=120)
    line = re.search(r"Available versions: (.*)", result.stdout)
    return line.group(1).split(", ") if line else []


def sdist_problems(python: str) -> list[str]:
    problems = []
    for req in requirements():
        if req.name in SDIST_ONLY:
            offered = offered_versions(req.name, python)
            if not any(req.specifier.contains(v, prereleases=False) for v in offered):
                problems.append(f"{req} has no release for Python {python} (newest offered: "
                                f"{offered[0] if offered else 'none'})")
    return problems


def wheel_requirements() -> list[str]:
    """The requirements pip resolves as wheels: sdist-only ones replaced by what they require."""
    out = []
    for req in requirements():
        if req.name not in SDIST_ONLY:
            out.append(str(req))
            continue
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if req.specifier.contains(installed):   # its metadata is the pinned release's
            out += [r for r in importlib.metadata.requires(req.name) or [] if "extra ==" not in r]
    return out


def start_wheel_resolution(python: str, report: Path) -> subprocess.Popen:
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    return subprocess.Popen(
        [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "install", "--dry-run",
         "--ignore-installed", "--quiet", "--report", str(report), "--python-version", python,
         "--implementation", "cp", "--only-binary=:all:", *platforms, "-c", str(ROOT / "constraints.txt"),
         *wheel_requirements()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PIP_CONFIG_FILE": os.devnull})


@pytest.fixture(scope="module")
def pypi():
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError as err:
        pytest.skip(f"PyPI unreachable ({err}): dependency resolution not checked")


@pytest.fixture(scope="module")
def resolutions(pypi, tmp_path_factory):
    """Python version -> (pip's exit status, its stderr, the packages it would install)."""
    pythons = sorted(set(named_pythons().values()))
    tmp = tmp_path_factory.mktemp("resolve")
    running = {v: start_wheel_resolution(v, tmp / f"{v}.json") for v in pythons}   # in parallel: network-bound
    out = {}
    for version, proc in running.items():
        _, err = proc.communicate(timeout=600)
        report = tmp / f"{version}.json"
        installs = json.loads(report.read_text())["install"] if report.exists() else []
        out[version] = (proc.returncode, err, {i["metadata"]["name"].lower(): i["metadata"]["version"]
                                               for i in installs})
    return out


def test_named_pythons_meet_requires_python():
    spec = SpecifierSet(PYPROJECT["requires-python"])
    named = named_pythons()
    assert all(spec.contains(v + ".0") for v in named.values()), (spec, named)
    # the README states the floor itself
    assert f">={named['README.md']}" == PYPROJECT["requires-python"]


@pytest.mark.parametrize("path, release", [("cluster/Dockerfile", r"ubuntu(\d\d\.\d\d)"),
                                           ("cluster/cluster.yaml", r"\(Ubuntu (\d\d\.\d\d)\)")])
def test_named_python_is_the_base_systems_own(path, release):
    text = (ROOT / path).read_text()
    ubuntu = re.search(release, text).group(1)
    python = named_pythons()[path]
    assert UBUNTU_PYTHON[ubuntu] == python, f"{path}: Ubuntu {ubuntu} ships Python {UBUNTU_PYTHON[ubuntu]}"
    assert f"python{python}-venv" in text


@pytest.mark.parametrize("python", sorted(set(named_pythons().values())))
def test_pins_resolve_for_each_named_python(python, resolutions):
    assert sdist_problems(python) == []
    code, err, installs = resolutions[python]
    if code and re.search(r"NewConnectionError|Max retries|Network is unreachable|timed out", err):
        pytest.skip(f"PyPI failed mid-resolution: {err.strip().splitlines()[-1]}")
    assert code == 0, err
    # every pin of constraints.txt is what pip picked
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            assert req.name in installs and req.specifier.contains(installs[req.name]), (req, installs.get(req.name))


def test_python_310_is_refused_by_the_pins(pypi):
    # Ubuntu 22.04's python3: pyserini 1.6.0 was never released for it
    problems = sdist_problems("3.10")
    assert len(problems) == 1 and problems[0].startswith("pyserini==1.6.0 has no release for Python 3.10"), problems


def test_make_stops_with_one_line_on_a_python_below_the_floor(tmp_path):
    import shutil
    if not shutil.which("make"):
        pytest.skip("no make")
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    old = tmp_path / "python3.10"   # a python3 that reports itself as 3.10
    old.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; sys.version_info = (3, 10, 14, \"final\", 0); "
                   "exec(sys.argv[1])' \"$2\"\n")
    old.chmod(0o755)
    # under `make test` the parent make's MAKELEVEL/MAKEFLAGS would add "Entering directory" lines
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    result = subprocess.run(["make", "install", f"PYTHON={old}"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env=env)
    floor = PYPROJECT["requires-python"].removeprefix(">=")
    assert result.returncode != 0 and not (tmp_path / ".venv").exists()
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert f"is Python 3.10; rerank-search needs {floor} or newer" in result.stderr
