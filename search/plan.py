"""`python -m search.run --dry-run`: every input checked and resolved as a search would, then the plan
printed; no Ray is started and nothing is written under --storage (BM25 runs, prepared data and a
smoke test's tiny model go to a temporary folder unless --storage already holds a complete copy).
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

STAMP = "<start time>"  # a new search's Tune run names carry its start time (search/record.py)


def study_groups(compare_optimizers: bool, optimizers) -> list[tuple]:
    """The optimizers of each study: one study of all, or one per optimizer."""
    return [(opt,) for opt in optimizers] if compare_optimizers else [tuple(optimizers)]


@contextmanager
def scratch(storage: Path, dry_run: bool):
    """The folder a search writes its derived inputs under: --storage, or for a dry run a temporary one."""
    if not dry_run:
        yield storage
        return
    folder = Path(tempfile.mkdtemp(prefix="search-dry-run-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def prepared_root(base: dict, storage: Path, work: Path) -> Path:
    """Where first_stage_dev_metrics prepares: --storage when its copy is complete (read, not rewritten)."""
    from trainables.prepared import cached, is_complete
    if work == storage:
        return storage
    folder, identities = cached(Path(base["data_dir"]), base["run_file"], storage / "prepared", base["eval_runs"])
    return storage if is_complete(folder, identities) else work


def model_root(space, storage: Path, work: Path) -> Path:
    """Where resolve_model finds (or builds) a smoke test's tiny model: --storage when built there."""
    return storage if (storage / "tiny-models" / space.tiny_kind / "config.json").is_file() else work


def study_names(groups, experiment: str, previous: dict | None, resume: bool, extend: int | None) -> list[tuple]:
    """(key, Tune run name, Optuna study name, what happens) of every study, as run_studies names them."""
    from search.extend import extension_name
    rows = []
    for optimizers in groups:
        key = "+".join(optimizers)
        entry = previous["studies"].get(key) if previous and (resume or extend) else None
        if entry is None:
            name = f"{experiment}-{STAMP}-{key}"
            rows.append((key, name, name, "new"))
        elif extend and entry["status"] == "FINISHED":
            rows.append((key, extension_name(entry), entry["optuna_study"], f"extended by {extend} trials"))
        else:
            rows.append((key, entry["tune_name"], entry.get("optuna_study", entry["tune_name"]),
                         f"{entry['status']}: resumed" if entry["status"] != "FINISHED" else "finished: kept"))
    return rows


def ranges(space, groups) -> list[str]:
    """The searched ranges per optimizer, as Space.suggest samples them."""
    from spaces.base import LION_BETA2, SCHEDULE_FREE, SCHEDULERS, WSD_DECAY_RATIO
    lines = []
    for opt in (opt for group in groups for opt in group):
        extra = f", beta2 {'|'.join(map(str, LION_BETA2))}" if opt == "lion" else ""
        if opt == "muon":
            extra = f", aux_lr {space.lr['adamw'][0]:.0e}..{space.lr['adamw'][1]:.0e} (log)"
        extra += ", scheduler constant (schedule-free)" if opt in SCHEDULE_FREE else ""
        lines.append(f"  {opt}: lr {space.lr[opt][0]:.0e}..{space.lr[opt][1]:.0e} (log), weight_decay "
                     f"{space.weight_decay[opt][0]:.0e}..{space.weight_decay[opt][1]:.0e} (log){extra}")
    return lines + [f"  every optimizer: scheduler {'|'.join(SCHEDULERS)} (wsd_decay_ratio {WSD_DECAY_RATIO[0]}.."
                    f"{WSD_DECAY_RATIO[1]} with wsd), warmup_ratio {space.warmup_ratio[0]}..{space.warmup_ratio[1]}"]


def describe_resources(resources, args) -> str:
    if resources is None:  # a cluster: the plan is made from its nodes when the search starts
        return (f"resources: planned from the cluster's nodes at start (--gpus-per-trial "
                f"{args.gpus_per_trial if args.gpus_per_trial is not None else 'default 3 if it has GPUs'}, "
                f"--workers-per-trial {args.workers_per_trial or 'default'})")
    kind = f"{resources.num_workers} GPU(s)" if resources.use_gpu else "0 GPUs"
    return (f"resources (a local Ray on this machine): {resources.num_workers} worker(s) per trial, {kind} per "
            f"trial, {resources.cpus_per_worker} CPU(s) per worker, {resources.concurrency} trial(s) at once")


def lines(*, space, args, groups, names, trials: int, references: int, cfg, model: str, tests: list,
          resources, first_stage: dict, pairs: int, steps: int | None, storage: Path, uri: str,
          experiment: str, optuna_url: str) -> list[str]:
    """The plan, one fact a line; cfg: the trials' fixed settings (a TrainConfig)."""
    from trainables.data import steps_per_epoch
    per_epoch = steps_per_epoch(pairs, cfg.batch_size)
    pace = f", {steps} steps, a report every {cfg.eval_every}" if steps else ""
    count = f"{args.extend} more trials" if args.extend else f"{trials} trials"
    out = [f"plan for space {space.name} (dry run: no Ray started, nothing written)",
           f"studies: {len(groups)} × {count}"
           f"{f' (+{references} preset trials)' if references else ''} × {cfg.epochs} epochs{pace}; "
           f"searcher {args.searcher}",
           f"model: {model}",
           f"data: {cfg.data_dir} ({cfg.training_data} training data)",
           f"training pairs: {pairs}, batch {cfg.batch_size}: {per_epoch} steps per epoch",
           f"dev: {first_stage['num_queries']} queries × rerank depth {cfg.rerank_depth} "
           f"(first stage nDCG@10 {first_stage['ndcg_at_10']:.4f})",
           f"test sets: {', '.join(tests) or 'none'}",
           describe_resources(resources, args),
           "searched ranges:", *ranges(space, groups),
           f"checkpoints: {storage / 'trials'}; Tune state: {storage / 'tune'}",
           f"MLflow: {uri}, experiment {experiment}",
           f"Optuna: {optuna_url}"]
    out += [f"  study {key}: Tune run {tune}, Optuna study {study} ({status})" for key, tune, study, status in names]
    return out


def show(space, args, trials, preset, base, model, tests, first_stage, pairs, steps, storage, uri,
         experiment, optuna_url, previous) -> dict:
    """The plan on stdout, the resources as a Ray started here would plan them (search/validate.py)."""
    from search import validate
    from trainables.config import TrainConfig
    groups = study_groups(args.compare_optimizers, args.optimizers)
    references = len(preset.reference[space.name]) if preset and not args.extend else 0
    if args.smoke_test:  # built in a temporary folder for the checks; the search builds it here
        model = f"tiny random {space.tiny_kind} model at {storage / 'tiny-models' / space.tiny_kind}"
    print("\n".join(lines(
        space=space, args=args, groups=groups, trials=trials, references=references, cfg=TrainConfig.from_dict(base),
        model=model,
        tests=tests, resources=validate.planned_resources(args), first_stage=first_stage, pairs=pairs, steps=steps,
        storage=storage, uri=uri, experiment=experiment, optuna_url=optuna_url,
        names=study_names(groups, experiment, previous, args.resume, args.extend))))
    return {"status": "DRY_RUN", "space": space.name, "experiment": experiment, "first_stage": first_stage}
