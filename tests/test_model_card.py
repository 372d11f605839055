"""trainables/model_card.py: a checkpoint's model/ loads in sentence-transformers' CrossEncoder with
the training max_length and scores as our reranking does; the best model's card."""
import pytest
import torch
import transformers
import yaml

from trainables.checkpoint import MODEL_DIR, save_checkpoint
from trainables.errors import UsageError
from trainables.evaluate import rerank_scores
from trainables.model_card import card_text, hub_id, record_max_length

QUERIES = {"q1": "what is a cross encoder", "q2": "boiling point of water"}
COLLECTION = {"p1": "A cross-encoder reads the query and the passage together.", "p2": "Water boils at 100 C.",
              # longer than max_length: CrossEncoder must truncate it where training did
              "p3": "Rerankers reorder a first-stage ranking by relevance to the query. " * 6}
PAIRS = [("q1", "p1"), ("q1", "p2"), ("q2", "p2"), ("q2", "p3")]


def saved_checkpoint(tiny_bert, tmp_path, max_length=24):
    """A checkpoint written by the loop's own save function."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=1)
    return save_checkpoint(tmp_path / "checkpoint", model, tokenizer, {"step": 1}, max_length=max_length), model, tokenizer


def test_crossencoder_loads_a_checkpoint_with_its_max_length_and_our_scores(tiny_bert, tmp_path):
    from sentence_transformers import CrossEncoder
    directory, model, tokenizer = saved_checkpoint(tiny_bert, tmp_path)
    ours = rerank_scores(model, tokenizer, PAIRS, QUERIES, COLLECTION, 24, 2, torch.device("cpu"))
    ce = CrossEncoder(str(directory / MODEL_DIR), device="cpu")
    assert ce.max_seq_length == 24
    assert transformers.AutoTokenizer.from_pretrained(directory / MODEL_DIR).model_max_length == 24
    # one logit head: ST's default is a sigmoid over it, so the raw logits are compared
    theirs = ce.predict([(QUERIES[q], COLLECTION[p]) for q, p in PAIRS], activation_fn=torch.nn.Identity())
    assert theirs.tolist() == pytest.approx(ours, abs=1e-5)
    assert torch.sigmoid(torch.tensor(ours)).tolist() == pytest.approx(
        ce.predict([(QUERIES[q], COLLECTION[p]) for q, p in PAIRS]).tolist(), abs=1e-5)


def test_max_length_needs_a_tokenizer_config(tmp_path):
    with pytest.raises(UsageError, match="tokenizer_config.json"):
        record_max_length(tmp_path, 64)


def test_the_card_has_hub_front_matter_metrics_and_the_train_config():
    config = {"model": "answerdotai/ModernBERT-base", "data_dir": "/data/msmarco", "max_length": 256, "lr": 3e-5,
              "optimizer": "lion", "prepared": "/tmp/x", "dev_set": None, "training_data": "triples"}
    text = card_text(config, {"ndcg_at_10": 0.71, "map": 0.5, "train_loss": None},
                     {"dl20": {"metrics": {"ndcg_at_10": 0.68, "num_queries": 54}}}, "abc_00001")
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["library_name"] == "sentence-transformers" and meta["pipeline_tag"] == "text-ranking"
    assert {"cross-encoder", "reranker"} <= set(meta["tags"]) and meta["base_model"] == "answerdotai/ModernBERT-base"
    assert "| dev | ndcg_at_10 | 0.7100 |" in text and "| test: dl20 | ndcg_at_10 | 0.6800 |" in text
    assert "| lr | 3e-05 |" in text and "| optimizer | lion |" in text and "/tmp/x" not in text
    assert "msmarco" in text and "train_loss" not in text


def test_base_model_is_a_hub_id_only_when_it_is_one(tmp_path):
    assert hub_id("packaged:all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_id(str(tmp_path)) is None and hub_id("./local/dir") is None
