from types import SimpleNamespace


from trainables.config import TrainConfig
from trainables.scoring import choose_weight, per_query_at


def data_with(first_stage, qrels):
    return SimpleNamespace(run=first_stage, qrels=qrels)


def cfg(weight):
    return TrainConfig(model="m", data_dir="d", first_stage_weight=weight)


def test_dev_picks_the_interpolation_weight_that_scores_best():
    # The model ranks the relevant passage last, BM25 ranks it first: any real weight of BM25 helps.
    data = data_with({"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, {"q": {"a": 2}})
    model = {"q": {"a": 0.0, "b": 1.0, "c": 0.9}}
    weight = choose_weight(model, data, cfg(None))
    assert weight > 0.5 and per_query_at(model, data, cfg(None), weight)["q"]["mrr_at_10"] == 1.0
    assert choose_weight(model, data, cfg(0.0)) == 0.0  # a fixed weight is kept


def test_ties_prefer_the_model_alone():
    data = data_with({"q": {"a": 1.0, "b": 2.0}}, {"q": {"a": 2}})
    assert choose_weight({"q": {"a": 5.0, "b": 0.0}}, data, cfg(None)) == 0.0


def test_config_round_trips_through_mlflow_strings():
    original = TrainConfig(model="m", data_dir="d", lr=3e-5, max_train_queries=None, bf16=False, first_stage_weight=None)
    params = {k: str(v) for k, v in original.to_dict().items()} | {"not_a_key": "x"}
    assert TrainConfig.from_params(params) == original
