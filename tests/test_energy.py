"""search.energy: a rerun's energy is the sum over its reports, each counted once."""
from search.energy import EpochEnergy, total_energy_kj


def test_every_epoch_counts_once(tmp_path):
    path = tmp_path / "run.energy.json"
    callback = EpochEnergy(path)
    assert total_energy_kj(path) is None
    callback.after_report(None, [{"epoch": 1, "energy_kj": 10.0}, {"epoch": 1, "energy_kj": 10.0}], None)
    callback.after_report(None, [{"epoch": 2, "energy_kj": 12.5}], None)
    callback.after_report(None, [{"epoch": 2, "energy_kj": 12.5}], None)  # re-reported after a restart
    callback.after_report(None, [{"epoch": 3}], None)  # no GPU reading: nothing to add
    assert total_energy_kj(path) == 22.5


def test_reports_within_an_epoch_each_count_once(tmp_path):
    path = tmp_path / "run.energy.json"
    callback = EpochEnergy(path)  # with eval_every: several reports per epoch, each the energy since the last
    for step, epoch in [(4, 1 / 3), (8, 2 / 3), (12, 1), (12, 1)]:  # step 12 re-reported after a restart
        callback.after_report(None, [{"step": step, "epoch": epoch, "energy_kj": 2.0}], None)
    assert total_energy_kj(path) == 6.0
