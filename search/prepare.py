"""Prepare a data directory once for every later search, trial and worker (search.run does it too
when the prepared form is missing or stale): every file is validated, BM25 is run when the directory
(or an eval/<name>/ folder) has no first-stage run, and memory-mapped Arrow tables are written under --storage/prepared.

    python -m search.prepare --data DIR [--storage runs]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainables.errors import exit_on_usage_error


@exit_on_usage_error
def main(argv=None) -> Path:
    from search.eval_sets import ensure_runs
    from search.run import ensure_first_stage
    from trainables.prepared import Prepared, prepare
    parser = argparse.ArgumentParser(prog="python -m search.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dir with collection.tsv, queries.tsv, qrels.txt, "
                                                                 "optionally a TREC run and triples*.tsv")
    parser.add_argument("--storage", type=Path, default=Path("runs"), help="the search's --storage")
    args = parser.parse_args(argv)
    storage = args.storage.resolve()
    run_file = ensure_first_stage(args.data, storage)
    folder = prepare(args.data, run_file, storage / "prepared", ensure_runs(args.data, storage))
    print(json.dumps({"prepared": str(folder), **Prepared(folder).manifest["counts"]}))
    return folder


if __name__ == "__main__":
    main()
    sys.exit(0)
