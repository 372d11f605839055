"""--extend N: N more trials for a finished search, in its Optuna study and MLflow parent run."""
from types import SimpleNamespace

import optuna
import pytest
from mlflow.tracking import MlflowClient

from search import extend
from search import record as search_record
from search.run import main, parse_args
from trainables.errors import UsageError


def given(**flags):
    return SimpleNamespace(**{"resume": False, "extend": None, "dry_run": False, **flags})


def recorded(tmp_path, status, **entry):
    record = {**search_record.new("e", ["--space", "minilm", "--trials", "3"]), "status": status,
              "studies": {"adamw+lion": {"tune_name": "e-1-adamw+lion", "parent_run_id": "p", "status": status,
                                         **entry}}}
    search_record.save(tmp_path, record)


@pytest.mark.parametrize("status, flags, needle", [
    (None, {"extend": 2}, "--extend: no search of experiment 'e'"),
    ("INTERRUPTED", {"extend": 2}, "did not finish (INTERRUPTED); --resume finishes it first"),
    ("FINISHED", {"resume": True}, "already finished (--extend N adds trials to it)"),
])
def test_what_cannot_be_continued(tmp_path, status, flags, needle):
    if status:
        recorded(tmp_path, status, optuna_study="e-1-adamw+lion")
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        extend.resolve(given(**flags), tmp_path, "e", parse_args)


def test_a_search_without_an_optuna_study_cannot_be_extended(tmp_path):
    recorded(tmp_path, "FINISHED")
    with pytest.raises(UsageError, match="kept no Optuna study"):
        extend.resolve(given(extend=2), tmp_path, "e", parse_args)


def test_extend_takes_the_recorded_flags(tmp_path):
    recorded(tmp_path, "FINISHED", optuna_study="e-1-adamw+lion")
    args, previous = extend.resolve(given(extend=2, dry_run=True), tmp_path, "e", parse_args)
    assert (args.trials, args.extend, args.dry_run, args.resume) == (3, 2, True, False)
    assert previous["status"] == "FINISHED"


def test_an_extension_is_a_new_tune_run_of_the_same_study():
    entry = {"tune_name": "e-1-k", "optuna_study": "e-1-k", "status": "FINISHED", "summary": {"trials": [{"t": 1}]}}
    extend.start_extension(entry, 4)
    assert entry["tune_name"] == "e-1-k-extend1" and entry["status"] == "RUNNING" and entry["earlier"] == [{"t": 1}]
    fields = extend.study_fields(entry, "unused", 9, seed=5)
    assert fields == {"tune_name": "e-1-k-extend1", "optuna_study": "e-1-k", "trials": 4, "seed": 6,
                      "earlier": [{"t": 1}]}
    assert extend.study_fields(None, "e-2-k", 9, 5) == {"tune_name": "e-2-k", "optuna_study": "e-2-k", "trials": 9,
                                                        "seed": 5, "earlier": []}


def test_smoke_search_then_extend_keeps_optuna_history_and_mlflow_parent(tmp_path):
    storage, flags = tmp_path / "runs", ["--space", "minilm", "--experiment", "ext"]
    first = main([*flags, "--smoke-test", "--storage", str(storage)])
    url, name = f"sqlite:///{storage / 'optuna.db'}", first["studies"][0]["tune_name"]
    before = optuna.load_study(study_name=name, storage=url).trials  # what optuna-dashboard reads
    assert first["status"] == "FINISHED" and len(before) == len(first["trials"]) == 2
    assert all(t.state.is_finished() for t in before)
    second = main([*flags, "--storage", str(storage), "--extend", "2"])
    after = optuna.load_study(study_name=name, storage=url).trials
    assert second["status"] == "FINISHED" and len(after) == 4 and len(second["trials"]) == 4
    assert [t.params for t in after[:2]] == [t.params for t in before]  # the history TPE continued from
    assert optuna.get_all_study_names(url) == [name]
    parent = first["studies"][0]["parent_run_id"]
    assert second["studies"][0]["parent_run_id"] == parent
    client = MlflowClient(first["mlflow_uri"])
    experiment = client.get_experiment_by_name("ext").experiment_id
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(children) == 4 and client.get_run(parent).info.status == "FINISHED"
    assert client.get_run(parent).data.tags["extensions"] == f"{name}-extend1"
    assert len(client.search_runs([experiment], "tags.role = 'search'")) == 1
