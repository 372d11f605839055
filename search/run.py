"""Run a hyperparameter search for one backbone: Optuna TPE proposes, ASHA stops, Ray Train trains.

    python -m search.run --space minilm                       # embedded data, packaged MiniLM, CPU
    python -m search.run --space modernbert --data DIR --address auto --mlflow-uri http://HEAD:5000
    python -m search.run --space minilm --compare-optimizers --trials 8   # 8 trials per optimizer
    python -m search.run --space minilm --compare-optimizers --optimizers adamw,lion,apollo_mini,muon
    python -m search.run --space gte --smoke-test             # tiny random model, a minute on CPU
    python -m search.run --space minilm --resume              # finish the last search after a crash
    python -m search.run --space minilm --extend 4            # 4 more trials for the last, finished search
    python -m search.run --space minilm --dry-run             # check every input, print the plan, run nothing
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

from search import record as search_record
from search.ray_session import add_ray_arguments, cpus_per_gpu, largest_gpu_node, start_ray
from search.resources import add_expect_gpus_arguments as resource_arguments
from search.embedded_data import DEFAULT_DIR as EMBEDDED_DIR
from trainables.config import OPTIMIZERS
from trainables.errors import UsageError, exit_on_usage_error

# The embedded data is small: short inputs, small batches and a shallow rerank keep the default
# search within minutes on two CPU cores.
EMBEDDED_SETTINGS = dict(max_length=64, batch_size=16, negatives_per_query=3, rerank_depth=20, epochs=2)
EMBEDDED_TRIALS = 6
SMOKE_SETTINGS = dict(max_length=48, batch_size=8, negatives_per_query=3, rerank_depth=10, epochs=2,
                      max_train_queries=16, max_dev_queries=6)


def optimizer_list(text: str) -> tuple:
    """--optimizers a,b: known names, each once, in the given order."""
    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in chosen if name not in OPTIMIZERS]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise UsageError(f"--optimizers {text!r}: expected distinct names among {', '.join(OPTIMIZERS)}")
    return chosen


def parse_args(argv=None) -> argparse.Namespace:
    from spaces import names
    from spaces.presets import PRESETS
    parser = argparse.ArgumentParser(prog="python -m search.run", description=__doc__.split("\n")[0])
    parser.add_argument("--space", required=True, help=f"backbone search space: {', '.join(names())}")
    parser.add_argument("--trials", type=int, default=None,
                        help=f"trials to run, per optimizer with --compare-optimizers (default 20; "
                             f"{EMBEDDED_TRIALS} on the embedded data)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (ASHA's max_t)")
    parser.add_argument("--eval-every", type=int, default=None, metavar="N",
                        help="also evaluate, checkpoint and report every N optimiser steps; ASHA then counts steps "
                             "(default: at epoch ends only)")
    parser.add_argument("--compare-optimizers", action="store_true",
                        help="one study per optimizer with equal budgets (its own Optuna TPE each)")
    parser.add_argument("--optimizers", default="adamw,lion", type=optimizer_list,
                        help=f"comma-separated optimizers the search (or --compare-optimizers) covers: "
                             f"{', '.join(OPTIMIZERS)} (default adamw,lion)")
    parser.add_argument("--searcher", choices=("tpe", "random"), default="tpe",
                        help="tpe: Optuna TPE with ASHA early stopping (default); random: random search, no stopping")
    parser.add_argument("--preset", default=None, help=f"also run a preset's settings as reference trials "
                                                       f"and use its fixed settings: {', '.join(PRESETS)}")
    parser.add_argument("--data", type=Path, default=None,
                        help="dir with collection.tsv, queries.tsv, qrels.txt, optionally a TREC run (BM25 "
                             "is run when there is none) and triples*.tsv (default: embedded)")
    parser.add_argument("--model", default=None, help="HF id or local dir (default: the space's backbone)")
    parser.add_argument("--training-data", choices=("auto", "judged", "triples"), default="auto",
                        help="judged pairs + BM25 negatives, the data dir's triples, or auto (triples if present)")
    parser.add_argument("--max-triples", type=int, default=None, help="read at most this many triples")
    parser.add_argument("--workers-per-trial", type=int, default=None, help="Ray Train workers per trial")
    parser.add_argument("--gpus-per-trial", type=int, default=None,
                        help="GPUs per trial, one worker each (default 3 if the cluster has GPUs, else 0)")
    parser.add_argument("--max-concurrent", type=int, default=None, help="upper bound on trials at once")
    resource_arguments(parser)
    parser.add_argument("--dev-fraction", type=float, default=0.2, help="share of judged queries held out for dev")
    parser.add_argument("--folds", type=int, default=None,
                        help="query-level k-fold: hold out one fold as test queries (default 5 with "
                             "--compare-optimizers, else none)")
    parser.add_argument("--test-fold", type=int, default=0, help="which fold is the test fold")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--dev-set", default=None,
                        help="eval set (DATA/eval/NAME/) the search optimises; its queries are the dev queries and "
                             "every top-level judged query (or triple) trains (default: a split of the top level)")
    parser.add_argument("--test-sets", default=None,
                        help="comma-separated eval sets the best trial's final checkpoint is scored on at the end "
                             "(default: every eval set but the dev set)")
    parser.add_argument("--max-dev-queries", type=int, default=None,
                        help="score at most this many dev queries (with --dev-set a seeded sample)")
    parser.add_argument("--mlflow-uri", default=None, help="tracking URI (default: sqlite in --storage)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default rerank-SPACE)")
    parser.add_argument("--storage", type=Path, default=Path("runs"), help="checkpoints, Tune state, MLflow db")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sampler and every trial")
    parser.add_argument("--smoke-test", action="store_true", help="tiny random model, tiny data slice")
    parser.add_argument("--register-model", default=None, metavar="NAME",
                        help="also register the best model (an MLflow pyfunc) in the MLflow model registry as NAME")
    parser.add_argument("--output-json", type=Path, default=None, help="write the best trial and all trials here")
    add_ray_arguments(parser)
    parser.add_argument("--max-failures", type=int, default=1, help="retries of a failed trial from its checkpoint")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a fixed training setting (a TrainConfig key), e.g. --set max_length=128")
    parser.add_argument("--resume", action="store_true",
                        help="finish this experiment's last search (same flags as recorded) after a crash")
    parser.add_argument("--extend", type=int, default=None, metavar="N",
                        help="add N trials to this experiment's last, finished search (same flags, same Optuna "
                             "study and MLflow parent run)")
    parser.add_argument("--optuna-storage", default=None, metavar="URL",
                        help="SQLAlchemy URL of the Optuna studies (default: sqlite:///STORAGE/optuna.db)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check every input and print the plan; start no Ray, write nothing")
    args = parser.parse_args(argv)
    for name in ("trials", "epochs", "max_triples", "eval_every", "max_dev_queries", "extend"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 < args.dev_fraction < 1:
        raise UsageError("--dev-fraction must be in (0, 1)")
    if args.register_model is not None:
        from search.model_artifact import check_name
        check_name(args.register_model)
    if args.resume and args.extend:
        raise UsageError("--resume finishes a crashed search, --extend adds to a finished one: pass one")
    if args.max_failures < 0:
        raise UsageError("--max-failures must be >= 0")
    if args.dev_set is not None and args.folds:
        raise UsageError("--folds holds out top-level test queries; with --dev-set the test sets are eval sets")
    if args.folds is None:
        args.folds = 5 if args.compare_optimizers and args.dev_set is None else 0
    if args.folds == 1 or args.folds < 0 or not 0 <= args.test_fold < max(args.folds, 1):
        raise UsageError("--folds must be 0 or >= 2, and --test-fold in [0, folds)")
    return args


def resolve_model(space, args, storage: Path) -> str:
    from trainables.models import locate, require
    from trainables.tiny import build_tiny_model
    if args.smoke_test:
        return str(build_tiny_model(space.tiny_kind, storage / "tiny-models" / space.tiny_kind))
    if args.model:
        return str(require(args.model))
    if locate(space.model) is not None:
        return space.model
    if space.fallback_model:
        print(f"note: {space.model} is not available offline; using {space.fallback_model} instead "
              f"(pass --model to choose)", file=sys.stderr)
        return str(require(space.fallback_model))
    raise UsageError(f"space {space.name!r} needs {space.model}, which is not available offline: "
                     f"pass --model with a local copy, or use --smoke-test")


def ensure_first_stage(data_dir: Path, storage: Path) -> str | None:
    """The data dir's own run (None: trials find it), or a BM25 top-1000 run made with Pyserini.

    BM25 runs in a child process: the JVM must never live in a process that later forks (Ray)."""
    from trainables.data import find_run_file
    if not Path(data_dir).is_dir():
        raise UsageError(f"{data_dir}: data directory not found")
    if find_run_file(data_dir, required=False):
        return None
    from search.bm25 import run_in_child
    out = storage / "bm25" / Path(data_dir).resolve().name / "run.bm25.trec"
    print(f"{data_dir} has no first-stage run: retrieving BM25 top-1000 with Pyserini into {out}", file=sys.stderr)
    run_in_child(Path(data_dir, "collection.tsv"), Path(data_dir, "queries.tsv"), out, bm25_index(data_dir, storage))
    return str(out.resolve())


def bm25_index(data_dir: Path, storage: Path) -> Path:
    """One Lucene index of the collection for the top-level and every eval set's BM25 run."""
    return storage / "bm25" / Path(data_dir).resolve().name / "run.bm25.trec.index"


def trial_base(space, args, model: str, data_dir: Path, run_file: str | None, preset) -> dict:
    """Every TrainConfig key a trial does not search."""
    base = {**space.fixed, "model": model, "data_dir": str(Path(data_dir).resolve()), "seed": args.seed,
            "dev_fraction": args.dev_fraction, "split_seed": args.split_seed, "folds": args.folds,
            "test_fold": args.test_fold, "run_file": run_file, "training_data": args.training_data,
            "max_triples": args.max_triples, "dev_set": args.dev_set}
    if args.data is None:
        base.update(EMBEDDED_SETTINGS)
    if preset:
        base.update(preset.fixed)
    if args.smoke_test:
        base.update(SMOKE_SETTINGS)
    if args.epochs:
        base["epochs"] = args.epochs
    if args.eval_every:  # absent otherwise: trials without it log exactly what they always did
        base["eval_every"] = args.eval_every
    if args.max_dev_queries:
        base["max_dev_queries"] = args.max_dev_queries
    return base


def apply_overrides(base: dict, assignments: list[str]) -> dict:
    """--set KEY=VALUE on top of the fixed settings; VALUE is read as JSON when it parses
    (numbers, true/false, null), else as a string. Unknown keys fail in TrainConfig."""
    base = dict(base)
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {assignment!r}: expected KEY=VALUE")
        try:
            base[key] = json.loads(text)
        except ValueError:
            base[key] = text
    return base


def first_stage_dev_metrics(base: dict, storage: Path) -> tuple[dict, int]:
    """Prepare the data once for every trial and worker (trainables/prepared.py: every file is
    checked here, before Ray starts), build the trials' data as each worker will (a batch larger
    than the training set fails here), and score the first stage on the dev queries and depth the
    trials rerank. Sets base["prepared"]; returns the metrics and the number of training pairs."""
    from trainables.config import TrainConfig
    from trainables.data import steps_per_epoch
    from trainables.evaluate import candidates, relevance_level, score_run, to_run
    from trainables.loop import load_trial_data
    from trainables.prepared import prepare
    from trainables.triples import find_triples
    cfg = TrainConfig.from_dict(base)
    if cfg.training_data == "triples" and find_triples(cfg.data_dir) is None:
        raise UsageError(f"{cfg.data_dir}: --training-data triples, but there is no triples*.tsv")
    base["prepared"] = str(prepare(cfg.data_dir, cfg.run_file, storage / "prepared", cfg.eval_runs))
    trial = load_trial_data(TrainConfig.from_dict(base))
    steps_per_epoch(len(trial.pairs), cfg.batch_size)
    data, dev = trial.eval, trial.dev_qids
    pairs = candidates(data.run, dev, cfg.rerank_depth)
    level = relevance_level(data.qrels, cfg.positive_level)
    metrics = score_run(to_run(pairs, [data.run[q][p] for q, p in pairs]), data.qrels, level)
    return metrics, len(trial.pairs)


def trial_steps(base: dict, pairs: int) -> int | None:
    """A whole trial's optimiser steps over `pairs` training pairs, ASHA's budget when trials
    report every eval_every steps (None without eval_every)."""
    from trainables.config import TrainConfig
    from trainables.reporting import total_steps
    cfg = TrainConfig.from_dict(base)
    if cfg.eval_every is None:
        return None
    return total_steps(pairs, cfg.batch_size, cfg.epochs)


def check_batch_split(base: dict, workers: int | None) -> None:
    """The settings as TrainConfig (every key, type and value), and a global batch that cannot
    give every worker's micro-batches a pair, fail before any trial."""
    from trainables.config import TrainConfig
    from trainables.data import check_batch_split as check
    from trainables.losses import config_group
    cfg = TrainConfig.from_dict(base)
    check(cfg.batch_size, workers or 1, cfg.grad_accum, config_group(cfg))  # listwise: whole groups


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def beats_first_stage(best: dict | None, first_stage: dict) -> bool:
    """Whether the chosen trial's final dev nDCG@10 is above the first stage's on the same queries."""
    score = best["metrics"]["ndcg_at_10"] if best else None
    return score is not None and score > first_stage["ndcg_at_10"]


def print_table(rows: list[dict], first_stage: dict, best: dict | None, title: str) -> None:
    """ndcg@10, map, mrr@10: the final score (interpolated with the first stage by the weight w chosen
    on dev); model: the model alone's nDCG@10."""
    header = f"{'trial':<10} {'optimizer':<9} {'lr':>9} {'wd':>8} {'scheduler':<9} {'ep':>2} " \
             f"{'ndcg@10':>8} {'map':>7} {'mrr@10':>7} {'model':>7} {'w':>4}"
    print(f"\n{title}\n" + header + "\n" + "-" * len(header))
    fmt = lambda v, digits=4: f"{v:.{digits}f}" if isinstance(v, (int, float)) else "-"
    for row in sorted(rows, key=lambda r: -(r["metrics"]["ndcg_at_10"] or -1)):
        c, m = row["config"], row["metrics"]
        mark = " (preset)" if row.get("reference") else ""
        print(f"{row['trial_id']:<10} {c.get('optimizer', '-'):<9} {c.get('lr', 0):>9.2e} "
              f"{c.get('weight_decay', 0):>8.1e} {c.get('scheduler', '-'):<9} {row['epochs'] or 0:>2} "
              f"{fmt(m['ndcg_at_10']):>8} {fmt(m['map']):>7} {fmt(m['mrr_at_10']):>7} "
              f"{fmt(m.get('model_ndcg_at_10')):>7} {fmt(m.get('first_stage_weight'), 1):>4}{mark}")
    print(f"{'first stage (BM25 run), same dev queries':<52} {first_stage['ndcg_at_10']:>8.4f} "
          f"{first_stage['map']:>7.4f} {first_stage['mrr_at_10']:>7.4f}")
    if best:
        gain = best["metrics"]["ndcg_at_10"] - first_stage["ndcg_at_10"]
        print(f"best trial {best['trial_id']}: dev nDCG@10 {best['metrics']['ndcg_at_10']:.4f} (final epoch) vs "
              f"first stage {first_stage['ndcg_at_10']:.4f} ({gain:+.4f}); checkpoint {best['checkpoint']}")
        if not beats_first_stage(best, first_stage):
            print("the best trial does not beat the first stage on dev nDCG@10: its reranking adds nothing")


def interrupt_on_sigterm() -> None:
    # A scheduler's SIGTERM ends the search like Ctrl-C: Tune saves its state and runs are KILLED.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


def run_studies(space, args, base, preset, resources, trials, storage, client, uri, experiment_id, record,
                first_stage, steps, optuna_url) -> list[dict]:
    """One study (all optimizers), or one per optimizer with --compare-optimizers; finished studies
    of a resumed search are not run again, of an extended one get --extend more trials (search/extend.py).
    Every study's parent run is opened first, while the server is known to answer: between studies
    nothing waits on MLflow."""
    from search import extend
    from search import study as studies
    from search import tracking_queue
    from search.plan import study_groups
    groups = study_groups(args.compare_optimizers, args.optimizers)
    plans = []  # (key, study or None when finished, record entry)
    for optimizers in groups:
        key = "+".join(optimizers)
        entry = record["studies"].get(key)
        if entry and entry["status"] == "FINISHED" and args.extend:
            extend.start_extension(entry, args.extend)
            record["status"] = "RUNNING"  # a crash mid-extension leaves it for --resume
        elif entry and entry["status"] == "FINISHED":
            plans.append((key, None, entry))
            continue
        fields = extend.study_fields(entry, f"{record['experiment']}-{record['stamp']}-{key}", trials, args.seed)
        references = [c for c in (preset.reference[space.name] if preset and not fields["earlier"] else [])
                      if c["optimizer"] in optimizers]  # an extension runs no preset trials again
        study = studies.Study(optimizers=optimizers, references=references, max_failures=args.max_failures,
                              searcher=args.searcher, total_steps=steps, optuna_storage=optuna_url, **fields)
        if entry:
            client.update_run(entry["parent_run_id"], status="RUNNING")
            if entry.get("extensions"):  # its `trials` param stays the first budget: MLflow params never change
                client.set_tag(entry["parent_run_id"], "extensions", ",".join(entry["extensions"]))
            search_record.save(storage, record)
        else:
            parent_id = studies.open_parent(
                client, experiment_id, space, study,
                params={"epochs": base["epochs"], "model": base["model"], "data": base["data_dir"],
                        "workers_per_trial": resources.num_workers, "use_gpu": resources.use_gpu,
                        "seed": args.seed, "folds": args.folds, "test_fold": args.test_fold,
                        "preset": args.preset or "none", "searcher": args.searcher, "dev_set": args.dev_set or "split",
                        **{f"first_stage_{k}": v for k, v in first_stage.items()}},
                tags={"git_commit": git_commit(), "data": base["data_dir"], "smoke_test": str(args.smoke_test),
                      "optuna_study": study.tune_name})
            entry = record["studies"][key] = {"tune_name": study.tune_name, "parent_run_id": parent_id,
                                              "status": "RUNNING", "optuna_study": study.tune_name}
            search_record.save(storage, record)
        plans.append((key, study, entry))
    summaries, started = [], set()
    try:
        for key, study, entry in plans:
            if study is None:
                summaries.append(entry["summary"])
                continue
            started.add(key)
            summary = studies.run(space, study, base, resources, storage, uri, experiment_id,
                                  entry["parent_run_id"], resume=args.resume)
            entry.update(status=summary["status"], summary=summary)
            if summary["status"] == "FINISHED":  # an extension's earlier trials are in its summary now
                entry.pop("earlier", None)
            search_record.save(storage, record)
            summaries.append(summary)
            print_table(summary["trials"], first_stage, summary["best"], f"study {key} ({summary['status']}):")
            if summary["status"] == "KILLED":
                break
    finally:
        for key, study, entry in plans:  # opened above but never run: interrupted (--resume runs them)
            if study is not None and key not in started:
                tracking_queue.for_uri(uri).put({"op": "terminate", "key": entry["parent_run_id"], "status": "KILLED"})
    record["status"] = "FINISHED" if len(summaries) == len(groups) and all(
        s["status"] != "KILLED" for s in summaries) else "INTERRUPTED"
    return summaries


@exit_on_usage_error
def main(argv=None) -> dict:
    import ray

    from search import eval_sets
    from search import resources as resource_plan
    from search import extend, model_artifact, optuna_store, plan, tracking_queue, tracking_uri, validate
    from spaces import get_space
    from spaces.presets import get_preset

    args = parse_args(argv)
    storage = args.storage.resolve()
    experiment = args.experiment or f"rerank-{args.space}"
    args, previous = extend.resolve(args, storage, experiment, parse_args)
    space = get_space(args.space)
    preset = get_preset(args.preset) if args.preset else None
    # Everything a user can get wrong is checked before Ray starts or anything is written.
    data_dir = args.data or EMBEDDED_DIR
    trials = args.trials or (2 if args.smoke_test else EMBEDDED_TRIALS if args.data is None else 20)
    tests = eval_sets.choose(data_dir, args.dev_set, args.test_sets)
    validate.check_outputs(args)
    validate.check_expect_gpus(args)
    uri = args.mlflow_uri or tracking_uri.default_uri(storage)
    if args.mlflow_uri:
        tracking_uri.check_reachable(uri)
    optuna_url = optuna_store.url(args.optuna_storage, storage)
    optuna_store.check(optuna_url)
    settings = lambda run_file, eval_runs: apply_overrides(
        {**trial_base(space, args, "(model)", data_dir, run_file, preset), "eval_runs": eval_runs}, args.set)
    check_batch_split(settings(None, None), validate.planned_workers(args))  # before BM25 may take minutes
    with plan.scratch(storage, args.dry_run) as work:  # a dry run writes nothing under --storage
        base = settings(ensure_first_stage(data_dir, work), eval_sets.ensure_runs(data_dir, work))
        model = resolve_model(space, args, plan.model_root(space, storage, work))
        # the last check: it writes the prepared data
        first_stage, pairs = first_stage_dev_metrics(base, plan.prepared_root(base, storage, work))
        steps = trial_steps(base, pairs)
        if args.dry_run:
            return plan.show(space, args, trials, preset, base, model, tests, first_stage, pairs, steps, storage,
                              uri, experiment, optuna_url, previous)
    from search import tracking  # MLflow and Ray Tune: imported only by a search that runs
    test, model_uri = {}, None
    storage.mkdir(parents=True, exist_ok=True)
    base["model"] = model
    try:
        cluster = start_ray(args.address, args.full_ray_dashboard)
        cluster = resource_plan.wait_for_gpus(ray.cluster_resources, args.expect_gpus, args.expect_gpus_timeout)
        resources = resource_plan.plan(cluster.get("CPU", 1), cluster.get("GPU", 0), args.gpus_per_trial,
                                       args.workers_per_trial, args.max_concurrent, cpus_per_gpu(),
                                       largest_gpu_node())
        check_batch_split(base, resources.num_workers)  # the default plan is known only now
        if resources.note:
            print(f"note: {resources.note}", file=sys.stderr)
        client, experiment_id = tracking.connect(uri, experiment, storage)
        if previous and not (args.resume or args.extend):  # a crashed search not resumed: close its runs
            for entry in previous["studies"].values():
                tracking.close_search(client, experiment_id, entry["parent_run_id"])
        record = previous if args.resume or args.extend else search_record.new(
            experiment, argv if argv is not None else sys.argv[1:])
        pace = f" ({steps} steps, a report every {base['eval_every']})" if steps else ""
        count = f"{args.extend} more trials" if args.extend else f"{trials} trials"
        studies_text = f"{len(args.optimizers)} studies" if args.compare_optimizers else "1 study"
        print(f"space {space.name}: {studies_text} × {count} × "
              f"{base['epochs']} epochs{pace}, model {model}, data {data_dir}; {resources.num_workers} worker(s) per "
              f"trial ({'GPU' if resources.use_gpu else 'CPU'}, {resources.cpus_per_worker} CPU each), "
              f"{resources.concurrency} at a time", file=sys.stderr)
        interrupt_on_sigterm()
        try:
            summaries = run_studies(space, args, base, preset, resources, trials, storage, client, uri,
                                    experiment_id, record, first_stage, steps, optuna_url)
            if record["status"] == "FINISHED":  # the test sets see only the chosen trial, once
                tracking_queue.for_uri(uri).drain(60)  # its trial's run must exist before scores land on it
                test = eval_sets.score_on_test_sets(summaries, base, resources, tests, storage / "test-runs" /
                                                     search_record.path(storage, experiment).stem / record["stamp"],
                                                     client, experiment_id)
                model_uri = model_artifact.publish(summaries, base, test, storage / "best-model" / search_record.path(
                    storage, experiment).stem / record["stamp"], client, args.register_model)
        finally:
            if record["status"] == "RUNNING":  # an exception or Ctrl-C left it unfinished
                record["status"] = "INTERRUPTED"
            search_record.save(storage, record)
    finally:
        ray.shutdown()
        backlogs = tracking_queue.finish(storage)  # MLflow records still queued: sent, or kept on disk
    best = max((s["best"] for s in summaries if s["best"]), key=lambda b: b["metrics"]["ndcg_at_10"], default=None)
    result = {"space": space.name, "experiment": experiment, "mlflow_uri": uri, "first_stage": first_stage,
              "status": record["status"], "best": best, "beats_first_stage": beats_first_stage(best, first_stage),
              "studies": summaries, "trials": [row for s in summaries for row in s["trials"]], "test": test,
              "best_model_uri": model_uri,
              "tracking_backlog": [str(p) for p in backlogs]}
    if args.output_json:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.output_json.with_name(args.output_json.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(args.output_json)
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome["status"] == "DRY_RUN" or outcome["status"] == "FINISHED" and outcome["best"] else 1)
