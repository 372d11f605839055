"""Going on with an experiment's last search: `--resume` finishes one that crashed, `--extend N`
adds N trials to one that finished. Both take the recorded flags (search/record.py), so the space,
data and studies are the same; an extension is a new Tune run per study that loads the study's
Optuna study from its RDB storage (TPE keeps its history) and logs into the same MLflow parent run.
"""
from __future__ import annotations

from search import record as search_record
from trainables.errors import UsageError


def resolve(args, storage, experiment: str, parse_args):
    """(args, previous record): the recorded flags with --resume or --extend, else args as given."""
    previous = search_record.load(storage, experiment)
    if not (args.resume or args.extend):
        return args, previous
    flag = "--resume" if args.resume else "--extend"
    if previous is None:
        raise UsageError(f"{flag}: no search of experiment {experiment!r} recorded in {storage}")
    if args.resume and previous["status"] == "FINISHED":
        raise UsageError(f"--resume: the last search of experiment {experiment!r} already finished "
                         f"(--extend N adds trials to it)")
    if args.extend and previous["status"] != "FINISHED":
        raise UsageError(f"--extend: the last search of experiment {experiment!r} did not finish "
                         f"({previous['status']}); --resume finishes it first")
    if args.extend and any("optuna_study" not in entry for entry in previous["studies"].values()):
        raise UsageError(f"--extend: the last search of experiment {experiment!r} kept no Optuna study "
                         f"(it predates --optuna-storage)")
    given = args
    args = parse_args(previous["argv"])  # the recorded flags, so the studies are the same
    args.resume, args.extend, args.dry_run = given.resume, given.extend, given.dry_run
    return args, previous


def extension_name(entry: dict) -> str:
    """The Tune run name of a finished study's next extension."""
    return f"{entry['optuna_study']}-extend{len(entry.get('extensions', [])) + 1}"


def start_extension(entry: dict, trials: int) -> None:
    """Turn a finished study's record entry into a running extension of `trials` more trials."""
    entry.setdefault("extensions", []).append(extension_name(entry))
    entry.update(tune_name=entry["extensions"][-1], status="RUNNING", trials=trials,
                 earlier=entry["summary"]["trials"])


def study_fields(entry: dict | None, name: str, trials: int, seed: int) -> dict:
    """search.study.Study's names, budget, seed and earlier trials: a new study (no entry), a resumed
    one, or an extension (its entry holds the trials before it)."""
    if entry is None:
        return {"tune_name": name, "optuna_study": name, "trials": trials, "seed": seed, "earlier": []}
    # An extension's sampler gets its own seed: the random baseline would repeat the first trials.
    return {"tune_name": entry["tune_name"], "optuna_study": entry.get("optuna_study", entry["tune_name"]),
            "trials": entry.get("trials", trials), "seed": seed + len(entry.get("extensions", [])),
            "earlier": entry.get("earlier", [])}
