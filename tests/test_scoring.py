from types import SimpleNamespace


from trainables.config import TrainConfig
from trainables.scoring import choose_weight, dev_metrics, per_query_at


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


def test_dev_metrics_report_the_final_and_the_model_alone_score():
    data = data_with({"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, {"q": {"a": 2}})
    model = {"q": {"a": 0.0, "b": 1.0, "c": 0.9}}  # the relevant passage ranked third: MRR 1/3
    metrics = dev_metrics(model, data, cfg(None), 0.8)
    assert metrics["mrr_at_10"] == 1.0 and metrics["model_mrr_at_10"] == 1 / 3
    assert metrics["first_stage_weight"] == 0.8 and metrics["model_ndcg_at_10"] < metrics["ndcg_at_10"]
    alone = dev_metrics(model, data, cfg(0.0), 0.0)
    assert alone["model_ndcg_at_10"] == alone["ndcg_at_10"]


def test_first_stage_weight_defaults_to_choosing_on_dev():
    assert TrainConfig(model="m", data_dir="d").first_stage_weight is None


def test_ties_prefer_the_model_alone():
    data = data_with({"q": {"a": 1.0, "b": 2.0}}, {"q": {"a": 2}})
    assert choose_weight({"q": {"a": 5.0, "b": 0.0}}, data, cfg(None)) == 0.0


def test_config_round_trips_through_mlflow_strings():
    original = TrainConfig(model="m", data_dir="d", lr=3e-5, max_train_queries=None, bf16=False, first_stage_weight=None)
    params = {k: str(v) for k, v in original.to_dict().items()} | {"not_a_key": "x"}
    assert TrainConfig.from_params(params) == original


def test_a_saved_checkpoint_scores_as_its_training_run_would(tiny_bert, tmp_path):
    # The trial's own final checkpoint on the test fold, with the weight it chose on dev, equals
    # scoring the same model on the same fold directly (what a rerun of its seed would report).
    import torch

    from tests.conftest import EMBEDDED
    from trainables.checkpoint import save_checkpoint
    from trainables.data import RetrievalData
    from trainables.models import load_reranker
    from trainables.scoring import evaluate_test, score_checkpoint
    tokenizer, model = load_reranker(tiny_bert)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoint = save_checkpoint(tmp_path / "checkpoint_000001", model, tokenizer, {
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": 4, "epoch": 1,
        "metrics": {"first_stage_weight": 0.3, "ndcg_at_10": 0.5}})
    config = dict(model=str(tiny_bert), data_dir=str(EMBEDDED), folds=3, test_fold=1, rerank_depth=10,
                  max_length=64, first_stage_weight=None, bf16=False)
    scored = score_checkpoint(checkpoint, config)
    cfg = TrainConfig.from_dict(config)
    direct = evaluate_test(model, tokenizer, RetrievalData.load(EMBEDDED), cfg, torch.device("cpu"), None, 0, 1, 0.3)
    assert len(scored) > 10 and scored == direct
