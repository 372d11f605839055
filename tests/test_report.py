"""analysis.report end to end on a small real MLflow store with known scores.

ModernBERT was searched with --compare-optimizers (one parent per optimizer) and re-trained with
two seeds per optimizer on 12 test queries; MiniLM has trials only, on CPU. Expected numbers are
computed here from the formulas, independently of analysis.stats.
"""
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy import stats as scipy_stats

from analysis import plots, render, report
from analysis.runs import Trial, load_experiment
from analysis.stats import bootstrap_p_text
from analysis.summary import backbones, paired_tests, table_rows

EXPERIMENT = "lion-vs-adamw"
QIDS = [f"q{i:02d}" for i in range(12)]
METRIC_NAMES = ("ndcg_at_10", "map", "mrr_at_10", "recall_at_100")
SEEDS = (0, 1)


def per_query_scores() -> dict[str, dict[int, dict[str, dict[str, float]]]]:
    """optimizer -> seed -> qid -> metric -> score; Lion is ahead on most but not all queries."""
    rng = np.random.default_rng(11)
    base = {m: rng.uniform(0.3, 0.8, len(QIDS)) for m in METRIC_NAMES}
    scores = {}
    for optimizer, shift in (("adamw", 0.0), ("lion", 0.04)):
        for seed in SEEDS:
            noisy = {m: np.clip(base[m] + shift + rng.normal(0, 0.03, len(QIDS)), 0, 1) for m in METRIC_NAMES}
            scores.setdefault(optimizer, {})[seed] = {
                q: {m: float(noisy[m][i]) for m in METRIC_NAMES} for i, q in enumerate(QIDS)}
    return scores


def log_run(client, experiment_id, tags, params, metrics=(), status="FINISHED") -> str:
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    client.log_batch(run_id, metrics=list(metrics), params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run_id, status)
    return run_id


def epoch_metrics(values: dict[str, list[float]]) -> list[Metric]:
    return [Metric(name, value, 1000 + epoch, epoch) for name, series in values.items()
            for epoch, value in enumerate(series, start=1)]


def trial_params(optimizer: str, lr: float, weight_decay: float, scheduler: str = "linear", warmup: float = 0.1):
    return {"optimizer": optimizer, "lr": lr, "weight_decay": weight_decay, "scheduler": scheduler,
            "warmup_ratio": warmup, "epochs": 3}


def build_store(tmp_path: Path) -> tuple[str, dict]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "artifacts").as_uri())
    scores = per_query_scores()
    parents = {}
    rng = np.random.default_rng(3)
    for optimizer, lr_range in (("adamw", (-5, -4)), ("lion", (-6, -5))):
        parent = log_run(client, experiment_id, {"role": "search", "space": "modernbert", "optimizer": optimizer},
                         {"trials": 5, "epochs": 3, "model": "answerdotai/ModernBERT-base", "data": "trec-dl-2020",
                          "folds": 5, "test_fold": 0},
                         status="RUNNING")
        parents[optimizer] = parent
        finals = {}
        for i in range(5):
            ndcg = list(0.5 + np.sort(rng.uniform(0, 0.2, 3)))
            if i == 4:
                ndcg = ndcg[:2]  # stopped early by ASHA after two epochs
            status = "FAILED" if i == 3 else "FINISHED"
            if i < 3:
                finals[f"{optimizer}{i}"] = ndcg[-1]
            log_run(client, experiment_id,
                    {"mlflow.parentRunId": parent, "role": "trial", "trial_id": f"{optimizer}{i}"},
                    trial_params(optimizer, 10 ** rng.uniform(*lr_range), 10 ** rng.uniform(-3, -1),
                                 ("constant", "linear", "cosine")[i % 3], rng.uniform(0, 0.2)),
                    epoch_metrics({"ndcg_at_10": ndcg, "map": [v - 0.1 for v in ndcg],
                                   "mrr_at_10": [v + 0.05 for v in ndcg], "gpu_util_mean": [80.0 + i] * len(ndcg)}),
                    status=status)
        for seed in SEEDS:
            per_query = scores[optimizer][seed]
            means = {f"test_{m}": float(np.mean([per_query[q][m] for q in QIDS])) for m in METRIC_NAMES}
            run_id = log_run(client, experiment_id,
                             {"mlflow.parentRunId": parent, "role": "rerun", "optimizer": optimizer,
                              "seed": str(seed), "source_trial": max(finals, key=finals.get)},  # the current best
                             trial_params(optimizer, 1e-5, 0.01),
                             [Metric(k, v, 1000, 0) for k, v in
                              {**means, "gpu_util_mean": 90.0 + seed, "energy_kj": 100.0 + 10 * seed}.items()])
            path = tmp_path / "per_query.json"
            path.write_text(json.dumps(per_query))
            client.log_artifact(run_id, str(path))
    minilm = log_run(client, experiment_id, {"role": "search", "space": "minilm"},
                     {"trials": 4, "epochs": 2, "model": "all-MiniLM-L6-v2", "data": "embedded"})
    for i, (optimizer, final) in enumerate((("adamw", 0.61), ("adamw", 0.64), ("lion", 0.58), ("lion", 0.55))):
        log_run(client, experiment_id,
                {"mlflow.parentRunId": minilm, "role": "trial", "trial_id": f"m{i}", "gpu": "none: no CUDA device"},
                trial_params(optimizer, 3e-5 if optimizer == "adamw" else 5e-6, 0.01),
                epoch_metrics({"ndcg_at_10": [final + 0.03, final], "map": [0.5, 0.5], "mrr_at_10": [0.6, 0.6]}))
    for parent in parents.values():
        client.set_terminated(parent, "FINISHED")
    return uri, {"scores": scores, "parents": [*parents.values(), minilm]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("store")
    uri, known = build_store(tmp_path)
    out = tmp_path / "report"
    report.main(["--experiment", EXPERIMENT, "--mlflow-uri", uri, "--out", str(out)])
    return {"uri": uri, "out": out, **known}


def seed_averaged(scores, optimizer, metric) -> np.ndarray:
    return np.mean([[scores[optimizer][s][q][metric] for q in QIDS] for s in SEEDS], axis=0)


def exact_sign_flip_p(diffs: np.ndarray) -> float:
    """Two-sided p of the mean difference over all 2**n swaps of the pairs, as an exact test counts."""
    observed = diffs.mean()
    signs = np.array(list(itertools.product((1, -1), repeat=len(diffs))))
    null = (signs * diffs).mean(axis=1)
    tolerance = 1e-12
    less, greater = np.mean(null <= observed + tolerance), np.mean(null >= observed - tolerance)
    return min(1.0, 2 * min(less, greater))


def test_table_one_means_and_stds_over_seeds(store):
    text = (store["out"] / "report.md").read_text()
    for optimizer, name in (("adamw", "AdamW"), ("lion", "Lion")):
        cells = []
        for metric in ("ndcg_at_10", "map", "mrr_at_10"):
            seed_means = [np.mean([store["scores"][optimizer][s][q][metric] for q in QIDS]) for s in SEEDS]
            cells.append(f"{np.mean(seed_means):.4f} ± {np.std(seed_means, ddof=1):.4f}")
        assert f"| ModernBERT | {name} | {' | '.join(cells)} | 2 | 90.5 | 105.0 | test queries, seed reruns |" in text
    # MiniLM has no reruns: its rows are the best final-epoch trial, dev scores, no GPU
    assert "| MiniLM | AdamW | 0.6400 | 0.5000 | 0.6000 | – (trial m1) | n/a (no GPU) | n/a (no GPU) |" in text
    assert "| MiniLM | Lion | 0.5800 |" in text
    assert "MiniLM has no seed reruns" in text


def test_paired_tests_match_hand_computation(store):
    experiment = load_experiment(store["uri"], EXPERIMENT)
    modernbert = next(b for b in backbones(experiment) if b.space == "modernbert")
    paired = paired_tests(modernbert)
    text = (store["out"] / "report.md").read_text()
    for metric in ("ndcg_at_10", "map", "mrr_at_10"):
        diffs = seed_averaged(store["scores"], "lion", metric) - seed_averaged(store["scores"], "adamw", metric)
        n, mean, sd = len(diffs), diffs.mean(), diffs.std(ddof=1)
        t = mean / (sd / math.sqrt(n))
        half = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        c = paired.comparisons[metric]
        assert c.n_queries == 12 and c.exact
        assert c.mean_diff == pytest.approx(mean, abs=1e-12)
        assert (c.ci_low, c.ci_high) == pytest.approx((mean - half, mean + half), abs=1e-12)
        assert c.t_p == pytest.approx(2 * scipy_stats.t.sf(abs(t), n - 1), rel=1e-9)
        assert c.permutation_p == pytest.approx(exact_sign_flip_p(diffs), abs=1e-12)
        b = paired.seed_tests[metric]
        assert b.n_queries == 12 and b.mean_diff == pytest.approx(mean, abs=1e-12) and b.ci_low < mean < b.ci_high
        seed_p = bootstrap_p_text(b).lstrip("= ")  # "< 0.0001" when no resample crossed 0
        assert (f"{mean:+.4f} | {b.ci_low:+.4f} to {b.ci_high:+.4f} | {seed_p} | {mean - half:+.4f} to "
                f"{mean + half:+.4f} | {c.t_p:.3g} |") in text
    assert paired.n_seeds == 2
    assert paired.verdict.label == "Lion better"
    assert paired.comparisons["ndcg_at_10"].permutation_p < 0.05


def test_answers_trials_and_paper_reference(store):
    text = (store["out"] / "report.md").read_text()
    assert "- **ModernBERT: Lion better.**" in text
    assert "- **MiniLM: too weak to decide.**" in text
    assert "**Overall: too weak to decide.**" in text  # MiniLM cannot decide, so no overall winner
    assert "| paper, TREC DL 2019, one shared setting | 0.7225 | 0.5121 |" in text
    assert "| ours, trec-dl-2020 (test queries, seed reruns, mean over 2 seed(s)) |" in text
    # searches: the FAILED trial and the ASHA-stopped trial are counted apart from finished ones
    assert "| ModernBERT | Lion | answerdotai/ModernBERT-base | trec-dl-2020 | 5 | 3 | 4 | 1 | 1 | 0 |" in text


def test_best_trial_is_chosen_at_final_epoch(store):
    experiment = load_experiment(store["uri"], EXPERIMENT)
    minilm = next(b for b in backbones(experiment) if b.space == "minilm")
    rows = {r.optimizer: r for r in table_rows(minilm)}
    assert rows["adamw"].trial.trial_id == "m1"  # final 0.64 beats 0.61, although epoch 1 of m1 was 0.67
    assert rows["adamw"].scores["ndcg_at_10"] == (pytest.approx(0.64), 0.0)
    text = (store["out"] / "report.md").read_text()
    assert "| MiniLM | AdamW | m1 | 3e-05 | 0.01 | linear | 0.1 | 0.6400 (2) | 0.6700 (1) |" in text


def test_outputs_exist_and_are_logged_on_every_search(store):
    out = store["out"]
    expected = {"report.md", "report.html", "lr_vs_ndcg.png", "learning_curves.png", "importance.png", "gpu_util.png"}
    assert {p.name for p in out.iterdir()} == expected
    html_text = (out / "report.html").read_text()
    assert "<table>" in html_text and '<img src="lr_vs_ndcg.png"' in html_text and "**" not in html_text
    assert "![" in (out / "report.md").read_text()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".report")]  # no temp dirs left
    client = MlflowClient(tracking_uri=store["uri"])
    for parent in store["parents"]:
        logged = {Path(item.path).name for item in client.list_artifacts(parent, "report")}
        assert logged == expected


def test_unknown_experiment_exits_2_naming_it(store, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--experiment", "no-such-experiment", "--mlflow-uri", store["uri"], "--out", "unused"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no-such-experiment" in err and "Traceback" not in err


def test_unreachable_uris_exit_2_naming_them(tmp_path, capsys, monkeypatch):
    missing = f"sqlite:///{tmp_path}/nowhere/mlflow.db"
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--experiment", EXPERIMENT, "--mlflow-uri", missing, "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2 and missing in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()  # no empty store created by the attempt
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--experiment", EXPERIMENT, "--mlflow-uri", "http://127.0.0.1:9", "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2 and "http://127.0.0.1:9" in capsys.readouterr().err


def test_empty_and_unfinished_experiments_exit_2(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("empty", artifact_location=(tmp_path / "a").as_uri())
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--experiment", "empty", "--mlflow-uri", uri, "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2 and "has no runs" in capsys.readouterr().err
    parent = log_run(client, experiment_id, {"role": "search", "space": "gte"}, {"epochs": 3})
    log_run(client, experiment_id, {"mlflow.parentRunId": parent, "role": "trial", "trial_id": "t0"},
            trial_params("lion", 1e-5, 0.1), epoch_metrics({"ndcg_at_10": [0.4]}), status="FAILED")
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--experiment", "empty", "--mlflow-uri", uri, "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2 and "no finished trial or rerun" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".r", "r"))]  # neither report nor temp dir


def test_failed_render_leaves_earlier_report_untouched(store, tmp_path, monkeypatch, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("earlier report")

    def broken(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(render, "markdown", broken)
    with pytest.raises(RuntimeError):
        report.main(["--experiment", EXPERIMENT, "--mlflow-uri", store["uri"], "--out", str(out)])
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no half-built directory beside it
    assert [p.name for p in out.iterdir()] == ["report.md"] and (out / "report.md").read_text() == "earlier report"
    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "todo.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--experiment", EXPERIMENT, "--mlflow-uri", store["uri"], "--out", str(stranger)])
    assert exit_info.value.code == 2 and str(stranger) in capsys.readouterr().err
    assert [p.name for p in stranger.iterdir()] == ["todo.txt"]


def test_searches_logged_before_role_tags_still_load(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("legacy", artifact_location=(tmp_path / "a").as_uri())
    parent = client.create_run(experiment_id, tags={"space": "minilm", "data": "embedded"}).info.run_id
    for i, optimizer in enumerate(("adamw", "lion")):
        log_run(client, experiment_id, {"mlflow.parentRunId": parent, "trial_id": f"t{i}"},
                trial_params(optimizer, 1e-5, 0.01), epoch_metrics({"ndcg_at_10": [0.5 + i / 10]}))
    out = report.main(["--experiment", "legacy", "--mlflow-uri", uri, "--out", str(tmp_path / "r")])
    text = (out / "report.md").read_text()
    assert "| MiniLM | Lion | 0.6000 |" in text and "| MiniLM | both | – | embedded |" in text


def test_default_uri_matches_the_search_driver(tmp_path, monkeypatch):
    from search.tracking import default_uri
    monkeypatch.chdir(tmp_path)
    assert report.default_uri() == default_uri(Path("runs"))


def make_trial(i: int, optimizer: str, lr: float, weight_decay: float, final: float) -> Trial:
    params = {k: str(v) for k, v in trial_params(optimizer, lr, weight_decay, "cosine", 0.05 * (i % 3)).items()}
    return Trial(f"r{i}", f"t{i}", "FINISHED", params, {}, {"ndcg_at_10": [(1, final - 0.1), (2, final)]})


def test_importance_study_infers_distributions_and_skips_small_searches():
    trials = [make_trial(i, ("adamw", "lion")[i % 2], 10 ** (-6 + i / 4), 0.0 if i == 0 else 0.01 * i, 0.5 + i / 100)
              for i in range(9)]
    distributions = plots.importance_study(trials).trials[0].distributions
    assert distributions["lr"].log and distributions["lr"].low == pytest.approx(1e-6)
    assert distributions["lr"].high == pytest.approx(10 ** (-6 + 8 / 4))
    assert not distributions["weight_decay"].log  # a zero decay cannot sit on a log axis
    assert distributions["optimizer"].choices == ("adamw", "lion")
    assert set(plots.param_importances(trials)) >= {"lr", "weight_decay", "optimizer"}
    assert "fewer than the 8" in plots.param_importances(trials[:3])


def test_gpu_plot_is_replaced_by_a_note_without_gpu_data(store, tmp_path):
    experiment = load_experiment(store["uri"], EXPERIMENT)
    minilm = [b for b in backbones(experiment) if b.space == "minilm"]
    figure = plots.gpu_utilisation(minilm, tmp_path / "gpu.png")
    assert figure.path is None and "none: no CUDA device" in figure.note
    assert not (tmp_path / "gpu.png").exists()


def test_one_seed_shows_no_spread_and_no_interval(tmp_path):
    from tests.mlflow_store import Store
    store = Store(tmp_path, EXPERIMENT)
    for optimizer, shift in (("adamw", 0.0), ("lion", 0.02)):
        parent = store.search(optimizer, space="modernbert")
        store.trial(parent, f"{optimizer}0", optimizer, [0.5, 0.6])
        store.rerun(parent, f"{optimizer}0", optimizer, 0,
                    {q: {m: 0.5 + shift + i / 100 for m in ("ndcg_at_10", "map", "mrr_at_10")} for i, q in enumerate(QIDS)})
    out = report.main(["--experiment", EXPERIMENT, "--mlflow-uri", store.uri, "--out", str(tmp_path / "r")])
    text = (out / "report.md").read_text()
    assert "| ModernBERT | Lion | 0.5750 ± n/a (1 seed) |" in text and "± 0.0000" not in text
    assert "| ModernBERT | nDCG@10 | +0.0200 | n/a (1 seed) | n/a (1 seed) | n/a (1 seed) |" in text
    assert "A single seed per optimizer cannot separate" in text
    assert "MAP (ours: over the reranked top-k only)" in text and "## Method: which test decides, and why" in text
