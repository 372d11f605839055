"""The search's summary: the table shows the final (interpolated) and the model-alone score, and
says in one line when the best trial does not beat the first stage."""
from search.run import beats_first_stage, print_table

FIRST_STAGE = {"ndcg_at_10": 0.50, "map": 0.30, "mrr_at_10": 0.60}


def trial(ndcg, model_ndcg, weight):
    return {"trial_id": "t1", "config": {"optimizer": "adamw", "lr": 1e-5, "weight_decay": 0.01, "scheduler": "linear"},
            "epochs": 1, "checkpoint": "/ckpt",
            "metrics": {"ndcg_at_10": ndcg, "map": 0.3, "mrr_at_10": 0.6, "model_ndcg_at_10": model_ndcg,
                        "first_stage_weight": weight}}


def test_beats_first_stage_only_when_strictly_above_it():
    assert beats_first_stage(trial(0.51, 0.40, 0.3), FIRST_STAGE)
    assert not beats_first_stage(trial(0.50, 0.40, 0.9), FIRST_STAGE)
    assert not beats_first_stage(None, FIRST_STAGE)


def test_table_shows_model_alone_and_weight_and_says_when_first_stage_wins(capsys):
    best = trial(0.49, 0.20, 0.9)
    print_table([best], FIRST_STAGE, best, "study:")
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("t1"))
    assert row.split()[-2:] == ["0.2000", "0.9"]  # model alone, then the weight chosen on dev
    assert sum("does not beat the first stage" in line for line in out.splitlines()) == 1
    better = trial(0.55, 0.52, 0.1)
    print_table([better], FIRST_STAGE, better, "study:")
    assert "does not beat" not in capsys.readouterr().out
