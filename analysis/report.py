"""Write the Lion-vs-AdamW report of one MLflow experiment: Markdown, HTML and PNG figures.

    python -m analysis.report --experiment NAME [--mlflow-uri URI] --out DIR

DIR gets report.md, report.html and the figures, all at once (built in a temporary directory
beside it, then renamed into place); the same files are logged under `report/` on every search
parent run of the experiment.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from analysis import html, plots, render, summary
from analysis.runs import Experiment, load_experiment
from analysis.stats import overall_verdict
from trainables.errors import UsageError, exit_on_usage_error
from trainables.paths import check_output

ARTIFACT_PATH = "report"


def default_uri() -> str:
    # Same as search.tracking.default_uri(Path("runs")); importing that module would import Ray.
    return f"sqlite:///{(Path('runs') / 'mlflow.db').resolve()}"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", required=True, help="MLflow experiment holding the searches")
    parser.add_argument("--mlflow-uri", default=None, help="tracking URI (default: sqlite:///runs/mlflow.db, from the cwd)")
    parser.add_argument("--out", type=Path, required=True,
                        help="report directory: new, empty, or an earlier report (replaced whole)")
    return parser.parse_args(argv)


def inputs_for(experiment: Experiment, figure_dir: Path) -> render.ReportInputs:
    backbones = summary.backbones(experiment)
    if not any(b.trials or b.reruns for b in backbones):
        raise UsageError(f"MLflow experiment {experiment.name!r} has no finished trial or rerun "
                         f"({len(experiment.searches)} search run(s))")
    paired = {b.space: summary.paired_tests(b) for b in backbones}
    verdicts = {b.space: summary.backbone_verdict(b, paired[b.space]) for b in backbones}
    figures = {
        "lr": ("Learning rate vs final-epoch dev nDCG@10", plots.lr_vs_final_ndcg(backbones, figure_dir / "lr_vs_ndcg.png")),
        "curves": ("Learning curves", plots.learning_curves(backbones, figure_dir / "learning_curves.png")),
        "importance": ("Hyperparameter importance", plots.importances(backbones, figure_dir / "importance.png")),
        "gpu": ("GPU utilisation by optimizer", plots.gpu_utilisation(backbones, figure_dir / "gpu_util.png")),
    }
    return render.ReportInputs(experiment, backbones, {b.space: summary.table_rows(b) for b in backbones},
                               paired, verdicts, overall_verdict(verdicts), figures)


def _check_out(out: Path) -> None:
    """Replacing DIR deletes it, so only a directory that is empty or holds an earlier report qualifies."""
    check_output(out, "--out", directory=True)
    if out.is_dir() and any(out.iterdir()) and not (out / "report.md").is_file():
        raise UsageError(f"--out {out}: not empty and holds no report.md; choose a new or empty directory")


def _move_into_place(built: Path, out: Path) -> None:
    if not out.exists():
        built.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    try:
        built.rename(out)
    except OSError:
        old.rename(out)  # leave the earlier report as it was
        raise
    shutil.rmtree(old)


def write_report(experiment: Experiment, out: Path) -> render.ReportInputs:
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside DIR so the final rename stays on one filesystem and is atomic.
    built = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        inputs = inputs_for(experiment, built)
        text = render.markdown(inputs, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
        (built / "report.md").write_text(text)
        (built / "report.html").write_text(html.to_html(text, f"Lion vs AdamW: {experiment.name}"))
        _move_into_place(built, out)
    finally:
        shutil.rmtree(built, ignore_errors=True)  # gone already after a successful rename
    return inputs


def log_to_searches(experiment: Experiment, out: Path) -> None:
    client = MlflowClient(tracking_uri=experiment.uri)
    for search in experiment.searches:
        try:
            client.log_artifacts(search.run_id, str(out), artifact_path=ARTIFACT_PATH)
        except (MlflowException, OSError) as err:
            raise UsageError(f"report written to {out}, but logging it on run {search.run_id} failed: "
                             f"{type(err).__name__}: {str(err)[:200]}") from None


@exit_on_usage_error
def main(argv=None) -> Path:
    args = parse_args(argv)
    # One progress bar per downloaded per_query.json would bury the report's two lines of output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = args.mlflow_uri or default_uri()
    out = args.out.resolve()
    _check_out(out)  # before MLflow is read: a report of many runs takes a while to gather
    experiment = load_experiment(uri, args.experiment)
    if not experiment.searches:
        raise UsageError(f"MLflow experiment {args.experiment!r} at {uri} has no search runs (tag role=search)")
    inputs = write_report(experiment, out)
    log_to_searches(experiment, out)
    print(f"report: {out / 'report.md'} and report.html; logged under '{ARTIFACT_PATH}/' on "
          f"{len(experiment.searches)} search run(s)")
    print(f"overall: {inputs.overall}")
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
