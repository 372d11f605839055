"""How well does an early rung predict a trial's final score? The case for ASHA's grace period.

    python benchmarks/rung_prediction.py --experiment EXP [--mlflow-uri URI] [--out results/rung_prediction.json]

Reads the random-search searches of an MLflow experiment (`search.run --searcher random`: no early
stopping, so every trial has a dev nDCG@10 at every epoch) and reports, for every epoch before the
last, the Spearman rank correlation between each trial's score at that epoch and its final score,
over all trials and per optimizer, and how often that epoch's leader is the final leader. Writes
JSON and a scatter plot (first epoch and ASHA's first rung against the final score) beside it.
Make the runs with, e.g.:

    python -m search.run --space minilm --searcher random --compare-optimizers --trials 12 --epochs 4 \
        --experiment rung-random
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import RESULTS  # noqa: E402  (sets the environment first)

METRIC = "ndcg_at_10"


def complete_histories(experiment, epochs: int) -> list[tuple[str, dict[int, float]]]:
    """(optimizer, {epoch: dev nDCG@10}) of every finished random-search trial that ran all `epochs`."""
    found = []
    for search in experiment.searches:
        if search.params.get("searcher") != "random":
            continue
        for trial in search.trials:
            history = dict(trial.history.get(METRIC, []))
            if trial.status == "FINISHED" and all(e in history for e in range(1, epochs + 1)):
                found.append((trial.optimizer, history))
    return found


def rung_agreement(histories: list[tuple[str, dict[int, float]]], epoch: int, final: int) -> dict:
    """Spearman rho (and its p) between the scores at `epoch` and at `final`, and whether the
    trial leading at `epoch` also leads at the end."""
    from scipy.stats import spearmanr
    early = [h[epoch] for _, h in histories]
    last = [h[final] for _, h in histories]
    if len(histories) < 3:
        return {"trials": len(histories), "spearman": None, "p": None, "same_leader": None}
    rho, p = spearmanr(early, last)
    leader = max(range(len(early)), key=early.__getitem__) == max(range(len(last)), key=last.__getitem__)
    return {"trials": len(histories), "spearman": float(rho), "p": float(p), "same_leader": bool(leader)}


def summary(histories: list[tuple[str, dict[int, float]]], epochs: int) -> dict:
    groups = {"all": histories, **{o: [h for h in histories if h[0] == o] for o in sorted({o for o, _ in histories})}}
    return {str(epoch): {name: rung_agreement(group, epoch, epochs) for name, group in groups.items()}
            for epoch in range(1, epochs)}


def plot(histories, epochs: int, rungs: list[int], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rungs), figsize=(4.5 * len(rungs), 4), squeeze=False)
    for ax, rung in zip(axes[0], rungs):
        for optimizer in sorted({o for o, _ in histories}):
            points = [(h[rung], h[epochs]) for o, h in histories if o == optimizer]
            ax.scatter(*zip(*points), label=optimizer, alpha=0.8)
        ax.set(xlabel=f"dev nDCG@10 at epoch {rung}", ylabel=f"final dev nDCG@10 (epoch {epochs})")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    from analysis.runs import load_experiment
    from search.searcher import grace_period
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--mlflow-uri", default=f"sqlite:///{Path('runs', 'mlflow.db').resolve()}")
    parser.add_argument("--out", type=Path, default=RESULTS / "rung_prediction.json")
    args = parser.parse_args()
    experiment = load_experiment(args.mlflow_uri, args.experiment)
    epochs = max((s.max_epochs or 0 for s in experiment.searches if s.params.get("searcher") == "random"), default=0)
    histories = complete_histories(experiment, epochs)
    if epochs < 2 or len(histories) < 3:
        raise SystemExit(f"need random-search trials of 2+ epochs (found {len(histories)} trials of {epochs} epochs)")
    result = {"experiment": args.experiment, "mlflow_uri": args.mlflow_uri, "epochs": epochs,
              "first_rung": grace_period(epochs), "by_epoch": summary(histories, epochs)}
    args.out.write_text(json.dumps(result, indent=1))
    plot(histories, epochs, sorted({1, grace_period(epochs)} - {epochs}), args.out.with_suffix(".png"))
    print(f"{len(histories)} trials, {epochs} epochs; Spearman rho of epoch e vs final:")
    for epoch, groups in result["by_epoch"].items():
        print(f"  epoch {epoch}: " + ", ".join(f"{name} {g['spearman']:.2f} (n={g['trials']})"
                                              for name, g in groups.items() if g["spearman"] is not None))


if __name__ == "__main__":
    main()
