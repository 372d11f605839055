"""benchmarks/rung_prediction.py on a hand-built store of random-search trials with known rankings."""
import os
import sys
from pathlib import Path

import pytest

from tests.mlflow_store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
_environ = dict(os.environ)
rung_prediction = pytest.importorskip("rung_prediction")
os.environ.clear()
os.environ.update(_environ)  # benchmarks/common sets the benchmarks' environment on import: not the suite's


def test_early_ranks_against_final_ranks(tmp_path):
    store = Store(tmp_path)
    random_search, tpe = store.search("adamw", epochs=3, searcher="random"), store.search("adamw", epochs=3)
    # Epoch 1 ranks the trials exactly backwards, epoch 2 exactly as the final epoch does.
    for i, final in enumerate((0.60, 0.62, 0.64, 0.66)):
        store.trial(random_search, f"r{i}", "adamw", [0.5 - i / 100, 0.55 + i / 100, final])
    store.trial(random_search, "cut", "adamw", [0.9, 0.9])  # not all epochs: left out
    store.trial(tpe, "t0", "adamw", [0.1, 0.2, 0.3])  # not a random search: left out
    histories = rung_prediction.complete_histories(store.load(), 3)
    assert len(histories) == 4
    by_epoch = rung_prediction.summary(histories, 3)
    assert by_epoch["1"]["all"]["spearman"] == pytest.approx(-1.0) and not by_epoch["1"]["all"]["same_leader"]
    assert by_epoch["2"]["adamw"]["spearman"] == pytest.approx(1.0) and by_epoch["2"]["adamw"]["same_leader"]
    assert rung_prediction.rung_agreement(histories[:2], 1, 3)["spearman"] is None  # too few trials
    rung_prediction.plot(histories, 3, [1, 2], tmp_path / "rungs.png")
    assert (tmp_path / "rungs.png").stat().st_size > 0
