"""Search efficiency: Optuna TPE + ASHA vs random search at the same trial budget.

    python benchmarks/search_efficiency.py [--trials 8] [--epochs 2] [--space minilm]

Both run through `python -m search.run` on the embedded data with the same seed, trial budget and
fixed settings; random search runs every trial for every epoch (no early stopping). For each, the
best final-epoch dev nDCG@10 so far is traced against trials completed and against wall time.
Prints a table, writes benchmarks/results/search_efficiency.json and a PNG plot beside it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT, machine  # noqa: E402  (sets the environment first)


def run_search(args, searcher: str) -> tuple[dict, float]:
    out = args.storage / f"{searcher}.json"
    started = time.time()
    subprocess.run([sys.executable, "-m", "search.run", "--space", args.space, "--searcher", searcher, "--trials",
                    str(args.trials), "--epochs", str(args.epochs), "--seed", str(args.seed), "--storage",
                    str(args.storage / searcher), "--experiment", f"efficiency-{searcher}", "--output-json", str(out)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text()), time.time() - started


def trace(summary: dict, epochs: int, wall_s: float) -> list[dict]:
    """Best-so-far final-epoch nDCG@10 after each trial, in the order the trials were created
    (trial ids carry no order; the Tune trial directories' numbers do, via the summary's order)."""
    best, points = None, []
    for index, row in enumerate(summary["trials"], start=1):
        score = row["metrics"]["ndcg_at_10"] if row["epochs"] == epochs else None
        if score is not None and (best is None or score > best):
            best = score
        points.append({"trials": index, "best_ndcg_at_10": best})
    return points


def trial_epochs(summary: dict) -> int:
    return sum(row["epochs"] or 0 for row in summary["trials"])


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        xs = [p["trials"] for p in result["trace"] if p["best_ndcg_at_10"] is not None]
        ys = [p["best_ndcg_at_10"] for p in result["trace"] if p["best_ndcg_at_10"] is not None]
        axis.step(xs, ys, where="post", marker="o",
                  label=f"{name} ({result['wall_s'] / 60:.1f} min, {result['trial_epochs']} trial-epochs)")
    axis.set_xlabel("trials completed")
    axis.set_ylabel("best final-epoch dev nDCG@10")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="minilm")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", type=Path, default=RESULTS / "search-efficiency")
    parser.add_argument("--out", type=Path, default=RESULTS / "search_efficiency.json")
    args = parser.parse_args()
    args.storage.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, searcher in (("TPE + ASHA", "tpe"), ("random", "random")):
        print(f"{name}: {args.trials} trials × {args.epochs} epochs", file=sys.stderr, flush=True)
        summary, wall_s = run_search(args, searcher)
        results[name] = {"wall_s": wall_s, "trial_epochs": trial_epochs(summary),
                         "best_ndcg_at_10": summary["best"]["metrics"]["ndcg_at_10"] if summary["best"] else None,
                         "trace": trace(summary, args.epochs, wall_s)}
    print(f"\n{'searcher':<12} {'best nDCG@10':>12} {'trial-epochs':>12} {'wall (min)':>10}")
    for name, result in results.items():
        print(f"{name:<12} {result['best_ndcg_at_10']:>12.4f} {result['trial_epochs']:>12} {result['wall_s'] / 60:>10.1f}")
    png = args.out.with_suffix(".png")
    plot(results, png)
    args.out.write_text(json.dumps({"results": results, "settings": {k: str(v) for k, v in vars(args).items()},
                                    "plot": str(png.relative_to(ROOT)), "machine": machine()}, indent=2))
    print(f"wrote {args.out} and {png}")


if __name__ == "__main__":
    main()
