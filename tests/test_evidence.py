"""analysis.evidence (and search.rerun's choice of what to re-train) on hand-built MLflow stores."""
import pytest

from analysis.evidence import FoldKey, current_best, evidence, fold_key
from analysis.summary import backbones, paired_tests, table_rows
from search.rerun import best_configs
from tests.mlflow_store import Store
from trainables.errors import UsageError

QUERIES = {"q1": 0.4, "q2": 0.6}


def scores(shift: float) -> dict:
    return {q: {"ndcg_at_10": v + shift, "map": v, "mrr_at_10": v} for q, v in QUERIES.items()}


def minilm(store: Store):
    return next(b for b in backbones(store.load()) if b.space == "minilm")


def test_reruns_of_an_earlier_best_are_left_out(tmp_path):
    # A resumed search finished a better trial (t2) after t1 was re-trained: t1's reruns are stale.
    store = Store(tmp_path)
    parent = store.search("lion")
    store.trial(parent, "t1", "lion", [0.5, 0.6])
    store.trial(parent, "t2", "lion", [0.5, 0.7])
    stale = store.rerun(parent, "t1", "lion", 0, scores(0.3), {"energy_kj": 50.0})
    fresh = store.rerun(parent, "t2", "lion", 0, scores(0.0), {"energy_kj": 10.0})
    backbone = minilm(store)
    assert [c.trial.trial_id for c in backbone.evidence.choices] == ["t2"]
    assert [r.run_id for r in backbone.reruns] == [fresh] != [stale]
    assert "no longer the current best" in backbone.evidence.notes[0]
    row = table_rows(backbone)[0]
    assert row.scores["ndcg_at_10"][0] == pytest.approx(0.5) and row.energy_kj == 10.0  # t2's only


def test_a_killed_search_chooses_nothing(tmp_path):
    store = Store(tmp_path)
    finished, killed = store.search("adamw"), store.search("adamw", status="KILLED")
    store.trial(finished, "a1", "adamw", [0.5, 0.6])
    store.trial(killed, "k1", "adamw", [0.5, 0.9])  # better, but its search may still change its mind
    store.rerun(killed, "k1", "adamw", 0, scores(0.0))
    backbone = minilm(store)
    assert [c.trial.trial_id for c in current_best(backbone.searches)] == ["a1"]
    assert backbone.reruns == [] and "did not finish" in backbone.evidence.notes[0]
    assert [t.trial_id for _, t, _ in best_configs(store.load(), set())] == ["a1"]


def test_folds_are_named_by_data_folds_split_seed_and_test_fold(tmp_path):
    store = Store(tmp_path)
    no_folds = store.search("adamw", folds=0, test_fold=0)  # logs test_fold 0, yet holds no test queries
    fold0 = store.search("adamw", test_fold=0)
    other_split = store.search("adamw", test_fold=0, split_seed=7)
    other_data = store.search("adamw", test_fold=0, data="/data/dl19")
    for i, parent in enumerate((no_folds, fold0, other_split, other_data)):
        store.trial(parent, f"t{i}", "adamw", [0.5, 0.9 - i / 100 if i else 0.99])
    searches = minilm(store).searches
    keys = {s.run_id: fold_key(s) for s in searches}
    assert keys[no_folds] is None
    assert keys[fold0] == FoldKey("/data/dl20", 5, "0", 0)
    assert keys[other_split] == FoldKey("/data/dl20", 5, "7", 0) and keys[other_data].data == "/data/dl19"
    # The no-folds search's better dev score wins nothing; every other search is its own fold.
    best = {c.key: c.trial.trial_id for c in current_best(searches)}
    assert best == {keys[fold0]: "t1", keys[other_split]: "t2", keys[other_data]: "t3"}


def test_one_split_is_pooled_when_several_have_reruns(tmp_path):
    store = Store(tmp_path)
    for fold, split_seed in ((0, 0), (1, 0), (0, 7)):
        parent = store.search("lion", test_fold=fold, split_seed=split_seed)
        store.trial(parent, f"s{split_seed}f{fold}", "lion", [0.5, 0.6])
        store.rerun(parent, f"s{split_seed}f{fold}", "lion", 0, scores(0.0))
    found = evidence(minilm(store).searches)
    assert sorted((k.split_seed, k.test_fold) for k, _ in found.reruns) == [("0", 0), ("0", 1)]
    assert any("1 other cross-validation split" in note for note in found.notes)


def test_a_joint_study_is_refused_as_evidence(tmp_path):
    store = Store(tmp_path)
    joint = store.search(None)
    store.trial(joint, "a", "adamw", [0.5, 0.6])
    store.trial(joint, "l", "lion", [0.5, 0.7])
    with pytest.raises(UsageError, match="joint study"):
        best_configs(store.load(), set())
    assert len(best_configs(store.load(), set(), allow_joint=True)) == 2
    for trial, optimizer, shift in (("a", "adamw", 0.0), ("l", "lion", 0.2)):
        for seed in (0, 1):
            store.rerun(joint, trial, optimizer, seed, {f"q{i}": {m: 0.3 + shift * (1 + i / 50) + seed / 1000
                                                                  for m in ("ndcg_at_10", "map", "mrr_at_10")}
                                                       for i in range(12)})
    paired = paired_tests(minilm(store))
    assert paired.seed_tests["ndcg_at_10"].p < 0.05  # Lion far ahead, yet no verdict from a joint study
    assert paired.verdict.label == "too weak to decide" and "joint study" in paired.verdict.reason
    from analysis import report
    text = (report.main(["--experiment", store.name, "--mlflow-uri", store.uri, "--out", str(tmp_path / "r")])
            / "report.md").read_text()
    assert "**Warning: the reruns of MiniLM come from a joint study" in text
