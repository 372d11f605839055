"""The report's figures, one PNG each with one panel per backbone.

Every function returns a Figure: the PNG's path, or None with the reason it was not drawn (too
few trials, no GPU data), so the report can say why a plot is missing instead of failing.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only: no display on cluster nodes or in CI
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402

from analysis.runs import Trial  # noqa: E402
from analysis.summary import PRIMARY, Backbone, backbone_name, optimizer_name  # noqa: E402

COLOURS = {"adamw": "tab:blue", "lion": "tab:orange"}
FLOAT_PARAMS = ("lr", "weight_decay", "warmup_ratio")
LOG_PARAMS = ("lr", "weight_decay")  # sampled log-uniform by the spaces
CATEGORICAL_PARAMS = ("optimizer", "scheduler")
MIN_IMPORTANCE_TRIALS = 8  # a random forest fitted to fewer points ranks noise
IMPORTANCE_SEED = 0


class Figure(NamedTuple):
    path: Path | None
    note: str


def _colour(optimizer: str) -> str:
    return COLOURS.get(optimizer, "tab:gray")


def _panels(count: int, title: str):
    # At least 7 inches wide, so a one-panel figure still fits its title.
    fig, axes = plt.subplots(1, count, figsize=(max(7.0, 4.6 * count), 3.8), squeeze=False)
    fig.suptitle(title)
    return fig, axes[0]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _float(value: str | None) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def lr_vs_final_ndcg(backbones: list[Backbone], path: Path) -> Figure:
    """Final-epoch dev nDCG@10 against lr (log axis); hollow markers are trials ASHA stopped early."""
    shown = [b for b in backbones if any(_float(t.params.get("lr")) for t in b.trials)]
    if not shown:
        return Figure(None, "no finished trial has an lr and a dev nDCG@10")
    fig, axes = _panels(len(shown), "Learning rate vs final-epoch dev nDCG@10")
    for ax, backbone in zip(axes, shown):
        for optimizer in backbone.optimizers():
            trials = [t for t in backbone.trials if t.optimizer == optimizer and _float(t.params.get("lr"))]
            for early in (False, True):
                group = [t for t in trials if (backbone.max_epochs is not None and t.epochs < backbone.max_epochs) == early]
                if group:
                    ax.scatter([float(t.params["lr"]) for t in group], [t.final(PRIMARY) for t in group],
                               edgecolors=_colour(optimizer), facecolors="none" if early else _colour(optimizer),
                               label=f"{optimizer_name(optimizer)}{' (stopped early)' if early else ''}")
        ax.set_xscale("log")
        ax.set(title=backbone_name(backbone.space), xlabel="learning rate", ylabel="final dev nDCG@10")
        ax.legend(fontsize=8)
    return Figure(_save(fig, path), "")


def learning_curves(backbones: list[Backbone], path: Path) -> Figure:
    """Dev nDCG@10 per epoch, one line per trial, coloured by optimizer."""
    shown = [b for b in backbones if b.trials]
    if not shown:
        return Figure(None, "no finished trial has a dev nDCG@10")
    fig, axes = _panels(len(shown), "Dev nDCG@10 per epoch (one line per trial)")
    for ax, backbone in zip(axes, shown):
        labelled = set()
        for trial in backbone.trials:
            epochs, values = zip(*trial.history[PRIMARY])
            label = None if trial.optimizer in labelled else optimizer_name(trial.optimizer)
            labelled.add(trial.optimizer)
            ax.plot(epochs, values, marker="o", alpha=0.7, color=_colour(trial.optimizer), label=label)
        ax.set(title=backbone_name(backbone.space), xlabel="epoch", ylabel="dev nDCG@10")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    return Figure(_save(fig, path), "")


def importance_study(trials: list[Trial]) -> optuna.Study:
    """An in-memory study holding the trials, with distributions spanning the values observed.

    The searches' own ranges differ per optimizer (Lion samples a lower lr), so the observed span
    is the honest common range. Log scale needs a positive lower bound; a zero decay stays linear.
    """
    distributions = {}
    for name in FLOAT_PARAMS:
        values = [v for v in (_float(t.params.get(name)) for t in trials) if v is not None]
        if values:
            low, high = min(values), max(values)
            distributions[name] = FloatDistribution(low, high, log=name in LOG_PARAMS and low > 0)
    for name in CATEGORICAL_PARAMS:
        values = sorted({t.params[name] for t in trials if name in t.params})
        if values:
            distributions[name] = CategoricalDistribution(values)
    study = optuna.create_study(direction="maximize")
    for trial in trials:
        params = {name: (trial.params[name] if name in CATEGORICAL_PARAMS else float(trial.params[name]))
                  for name in distributions if name in trial.params}
        study.add_trial(optuna.trial.create_trial(
            value=trial.final(PRIMARY), params=params, distributions={n: distributions[n] for n in params}))
    return study


def param_importances(trials: list[Trial]) -> dict[str, float] | str:
    """fANOVA importances for final dev nDCG@10, or the reason there are none."""
    if len(trials) < MIN_IMPORTANCE_TRIALS:
        return f"{len(trials)} finished trial(s), fewer than the {MIN_IMPORTANCE_TRIALS} an importance estimate needs"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = importance_study(trials)
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError) as err:  # e.g. every trial scored the same: nothing to explain
        return f"importances undefined ({err})"


def importances(backbones: list[Backbone], path: Path) -> Figure:
    results = {b.space: param_importances(b.trials) for b in backbones}
    shown = {space: r for space, r in results.items() if isinstance(r, dict) and r}
    skipped = "; ".join(f"{backbone_name(space)}: {r}" for space, r in results.items() if isinstance(r, str))
    if not shown:
        return Figure(None, skipped or "no backbone has trials")
    fig, axes = _panels(len(shown), "Hyperparameter importance for final dev nDCG@10 (fANOVA)")
    for ax, (space, values) in zip(axes, shown.items()):
        names = sorted(values, key=values.get)
        ax.barh(names, [values[n] for n in names], color="tab:green")
        ax.set(title=backbone_name(space), xlabel="importance (share of variance)")
    return Figure(_save(fig, path), f"skipped {skipped}" if skipped else "")


def gpu_utilisation(backbones: list[Backbone], path: Path) -> Figure:
    """Mean GPU utilisation per run (trials and reruns), by optimizer."""
    data = {}
    for backbone in backbones:
        for trial in backbone.trials:
            util = [v for _, v in trial.history.get("gpu_util_mean", [])]
            if util:
                data.setdefault(backbone.space, {}).setdefault(trial.optimizer, []).append(sum(util) / len(util))
        for rerun in backbone.reruns:
            if "gpu_util_mean" in rerun.metrics:
                data.setdefault(backbone.space, {}).setdefault(rerun.optimizer, []).append(rerun.metrics["gpu_util_mean"])
    if not data:
        reasons = sorted({t.tags["gpu"] for b in backbones for t in b.all_trials if "gpu" in t.tags})
        return Figure(None, "no GPU utilisation was recorded" + (f" ({'; '.join(reasons)})" if reasons else ""))
    fig, axes = _panels(len(data), "Mean GPU utilisation per run")
    for ax, (space, by_optimizer) in zip(axes, data.items()):
        names = sorted(by_optimizer)
        box = ax.boxplot([by_optimizer[n] for n in names], patch_artist=True, medianprops={"color": "black"})
        for patch, name in zip(box["boxes"], names):
            patch.set_facecolor(_colour(name))
        ax.set_xticks(range(1, len(names) + 1), [optimizer_name(n) for n in names])
        ax.set(title=backbone_name(space), ylabel="mean GPU utilisation (%)")
    return Figure(_save(fig, path), "")
