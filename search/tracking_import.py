"""Write a search's tracking backlog (records its MLflow server missed) into an MLflow store.

    python -m search.tracking_import runs/tracking-backlog/FILE.jsonl [--mlflow-uri URI]

Records are sent in their order, as the search would have sent them; running it again is harmless.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from search.tracking_queue import apply, brief, transient
from trainables.errors import UsageError, exit_on_usage_error


def read(path: Path) -> tuple[dict, list[dict]]:
    if not path.is_file():
        raise UsageError(f"{path}: no such backlog file")
    try:
        header, *records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError as err:
        raise UsageError(f"{path}: not a tracking backlog ({err})") from None
    if "mlflow_uri" not in header or not all("op" in r and "key" in r for r in records):
        raise UsageError(f"{path}: not a tracking backlog")
    return header, records


@exit_on_usage_error
def main(argv=None) -> int:
    from mlflow.tracking import MlflowClient
    parser = argparse.ArgumentParser(prog="python -m search.tracking_import", description=__doc__.split("\n")[0])
    parser.add_argument("backlog", type=Path, help="a .jsonl file under <storage>/tracking-backlog")
    parser.add_argument("--mlflow-uri", default=None, help="tracking URI (default: the search's own)")
    args = parser.parse_args(argv)
    header, records = read(args.backlog)
    uri = args.mlflow_uri or header["mlflow_uri"]
    client, run_ids, refused = MlflowClient(tracking_uri=uri), {}, 0
    for done, record in enumerate(records):
        try:
            apply(client, record, run_ids)
        except Exception as err:  # noqa: BLE001 - a refused record is reported, the rest still go
            if transient(err):
                raise UsageError(f"MLflow tracking at {uri} failed after {done} of {len(records)} records "
                                 f"({brief(err)}); run this again when it answers") from None
            refused += 1
            print(f"warning: MLflow refused a record ({record['op']} {record['key']}): {brief(err)}",
                  file=sys.stderr)
    print(f"wrote {len(records) - refused} of {len(records)} records to {uri}")
    return refused


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
