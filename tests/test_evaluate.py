import math

import pytest

from trainables.data import read_qrels, read_run
from trainables.evaluate import per_query_metrics, relevance_level, score_run

QRELS = {"q1": {"a": 3, "b": 1, "c": 2, "z": 2}, "q2": {"x": 2}, "q3": {"y": 1}}


def dcg(gains):
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def test_hand_computed_metrics():
    run = {"q1": {"b": 9.0, "a": 8.0, "d": 7.0, "c": 6.0}, "q2": {f"d{i:02d}": 20 - i for i in range(11)} | {"x": 0.5}}
    per_query = per_query_metrics(run, QRELS, relevance_level=2)
    ideal = dcg([3, 2, 2, 1])
    assert per_query["q1"]["ndcg_at_10"] == pytest.approx(dcg([1, 3, 0, 2]) / ideal)
    # relevant (rel >= 2): a, c, z; ranks 2 and 4 retrieved, z never
    assert per_query["q1"]["map"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert per_query["q1"]["mrr_at_10"] == pytest.approx(1 / 2)
    assert per_query["q1"]["recall_at_100"] == pytest.approx(2 / 3)
    # q2's only relevant passage is at rank 12: MRR@10 counts it as 0, MAP still sees it
    assert per_query["q2"]["mrr_at_10"] == 0.0
    assert per_query["q2"]["map"] == pytest.approx(1 / 12)
    assert set(per_query) == {"q1", "q2"}  # q3 has no results, so it is not scored by default
    means = score_run(run, QRELS)
    assert means["num_queries"] == 2 and means["mrr_at_10"] == pytest.approx(0.25)
    complete = score_run(run, QRELS, complete=True)
    assert complete["num_queries"] == 3 and complete["mrr_at_10"] == pytest.approx(0.5 / 3)


def test_binary_judgments_count_grade_1_and_graded_ones_positive_level():
    binary = {"q1": {"a": 1, "b": 0}}
    assert relevance_level(binary, 2) == 1 and relevance_level(QRELS, 2) == 2 and relevance_level(QRELS, 3) == 3
    run = {"q1": {"b": 2.0, "a": 1.0}}  # MS MARCO dev style: the one relevant passage at rank 2
    assert per_query_metrics(run, binary, relevance_level(binary, 2))["q1"]["mrr_at_10"] == pytest.approx(0.5)


def test_ties_break_by_docid_descending():
    # all tied: trec_eval ranks "c" > "b" > "a"
    run = {"q1": {"a": 1.0, "b": 1.0, "c": 1.0}}
    assert per_query_metrics(run, {"q1": {"a": 2}})["q1"]["mrr_at_10"] == pytest.approx(1 / 3)
    assert per_query_metrics(run, {"q1": {"c": 2}})["q1"]["mrr_at_10"] == pytest.approx(1.0)
    # a tie straddling the cut at 10: the docid order decides who is in the top 10
    tied = {"q1": {f"p{i:02d}": 1.0 for i in range(12)}}
    assert per_query_metrics(tied, {"q1": {"p00": 2}})["q1"]["mrr_at_10"] == 0.0
    assert per_query_metrics(tied, {"q1": {"p02": 2}})["q1"]["mrr_at_10"] == pytest.approx(1 / 10)


def test_reference_figures_on_dl20(dl20):
    metrics = score_run(read_run(dl20 / "run.bm25.trec"), read_qrels(dl20 / "qrels.txt"), relevance_level=2)
    assert round(metrics["ndcg_at_10"], 4) == 0.4796
    assert round(metrics["map"], 4) == 0.2685
    assert round(metrics["recall_at_100"], 4) == 0.5599
    assert round(metrics["mrr_at_10"], 4) == 0.6533
    assert metrics["num_queries"] == 54


def test_bf16_scoring_runs_the_head_in_fp32_so_rounding_makes_no_ties(tiny_bert):
    import torch

    from trainables.evaluate import rerank_scores
    from trainables.models import load_reranker
    tokenizer, model = load_reranker(tiny_bert)
    words = ["river", "bank", "loan", "fish", "court", "tree", "rate", "stone", "music", "field"]
    collection = {f"p{i:03d}": f"{words[i % 10]} {words[i // 10]} passage {i}" for i in range(100)}
    queries = {"q": "where does the river bank lend money"}
    pairs = [("q", pid) for pid in collection]
    cpu, bf16 = torch.device("cpu"), torch.bfloat16
    batch = tokenizer([queries["q"]] * len(pairs), [collection[p] for _, p in pairs], padding=True,
                      return_tensors="pt")
    with torch.no_grad(), torch.autocast("cpu", dtype=bf16):  # the head under autocast, as scoring once ran it
        rounded = model(**batch).logits.view(-1)
    assert rounded.dtype == bf16 and len(set(rounded.tolist())) < len(pairs)  # bf16 logits tie
    scores = rerank_scores(model, tokenizer, pairs, queries, collection, 64, 32, cpu, bf16)
    assert len(set(scores)) == len(pairs)  # no ties left for the docid to break
    with torch.no_grad(), torch.autocast("cpu", dtype=bf16):
        assert model(**batch).logits.dtype == bf16  # the fp32 head was only for scoring: its hook is gone
