"""A seed rerun's total GPU energy: Ray Train returns the last report only, and energy_kj is
logged per report (since the previous one), so the reports are summed as they arrive."""
from __future__ import annotations

import json
from pathlib import Path

from ray.train import UserCallback


class EpochEnergy(UserCallback):
    """Keeps {step: energy_kj} of every report in a JSON file. Ray Train runs this on its
    controller, which sits on the driver's node, so the driver reads the file back."""

    def __init__(self, path: Path):
        self.path = str(path)

    def after_report(self, run_context, metrics, checkpoint):
        first = metrics[0] if metrics else {}  # energy_kj is already summed over the workers
        if not isinstance(first.get("energy_kj"), (int, float)):
            return
        seen = read(self.path)
        # Keyed by optimiser step, unique per report: a report made again after a restart counts once.
        seen[str(first.get("step", first.get("epoch", len(seen) + 1)))] = float(first["energy_kj"])
        Path(self.path).write_text(json.dumps(seen))


def read(path) -> dict[str, float]:
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}


def total_energy_kj(path) -> float | None:
    """Sum over the reports; None when no report had a GPU energy reading."""
    seen = read(path)
    return sum(seen.values()) if seen else None
