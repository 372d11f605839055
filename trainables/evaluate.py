"""Scoring with official TREC semantics (pytrec_eval), and reranking candidates with a model.

nDCG@10 uses graded gains; MAP, recall and MRR count rel >= relevance_level (2 on TREC DL's
graded judgments, 1 on binary ones such as MS MARCO dev's: see relevance_level).
MRR@10 cuts each ranking at 10 first. Ties are broken by docid descending, as trec_eval does;
under bf16 autocast the scoring head runs in fp32, so a logit rounded to bf16's 8 bits cannot
create such ties among a query's candidates.
"""
from __future__ import annotations

from contextlib import contextmanager

import pytrec_eval
import torch

from trainables.data import ranked

METRICS = ("ndcg_at_10", "map", "mrr_at_10", "recall_at_100", "recall_at_1000")
_TREC_NAMES = {"ndcg_cut_10": "ndcg_at_10", "map": "map", "recall_100": "recall_at_100",
               "recall_1000": "recall_at_1000"}


def relevance_level(qrels: dict[str, dict[str, int]], positive_level: int) -> int:
    """The grade MAP, recall and MRR count from: positive_level on graded judgments, 1 on binary
    (0/1) ones, where any higher level would count nothing relevant."""
    top = max((rel for judged in qrels.values() for rel in judged.values()), default=0)
    return positive_level if top > 1 else 1


def per_query_metrics(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                      relevance_level: int = 2) -> dict[str, dict[str, float]]:
    """{qid: {metric: value}} for every query that has both results and judgments."""
    run = {qid: scores for qid, scores in run.items() if qid in qrels}
    evaluator = pytrec_eval.RelevanceEvaluator(
        qrels, {"ndcg_cut.10", "map", "recall.100", "recall.1000"}, relevance_level=relevance_level)
    scored = evaluator.evaluate(run)
    # MRR@10: reciprocal rank within the top 10 of trec_eval's own ordering, 0 beyond it.
    top10 = {qid: dict(ranked(scores)[:10]) for qid, scores in run.items()}
    reciprocal = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=relevance_level)
    for qid, values in reciprocal.evaluate(top10).items():
        scored[qid]["recip_rank"] = values["recip_rank"]
    return {qid: {**{_TREC_NAMES[k]: v for k, v in values.items() if k in _TREC_NAMES},
                  "mrr_at_10": values["recip_rank"]}
            for qid, values in scored.items()}


def mean_metrics(per_query: dict[str, dict[str, float]], judged_qids=None) -> dict[str, float]:
    """Mean over scored queries; with judged_qids, over all of them, missing ones counting 0 (trec_eval -c)."""
    qids = sorted(judged_qids) if judged_qids is not None else sorted(per_query)
    if not qids:
        return {name: 0.0 for name in METRICS} | {"num_queries": 0}
    means = {name: sum(per_query.get(q, {}).get(name, 0.0) for q in qids) / len(qids) for name in METRICS}
    return means | {"num_queries": len(qids)}


def score_run(run, qrels, relevance_level: int = 2, complete: bool = False) -> dict[str, float]:
    per_query = per_query_metrics(run, qrels, relevance_level)
    return mean_metrics(per_query, judged_qids=qrels.keys() if complete else None)


def candidates(run: dict[str, dict[str, float]], qids, depth: int) -> list[tuple[str, str]]:
    """(qid, pid) for the top `depth` first-stage results of each query, in rank order."""
    return [(qid, pid) for qid in qids for pid, _ in ranked(run.get(qid, {}))[:depth]]


def output_layer(model) -> torch.nn.Linear:
    """The Linear that produces the relevance logit: the `classifier` of transformers' sequence
    classification models, else the model's last Linear."""
    head = getattr(model, "classifier", None)
    return head if isinstance(head, torch.nn.Linear) else [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


def _linear_in_fp32(module, inputs, output):
    with torch.autocast(output.device.type, enabled=False):
        bias = None if module.bias is None else module.bias.float()
        return torch.nn.functional.linear(inputs[0].float(), module.weight.float(), bias)


@contextmanager
def fp32_head(model, autocast_dtype):
    """Under autocast, recompute the logit layer in fp32 (a forward hook replaces its output)."""
    handle = output_layer(model).register_forward_hook(_linear_in_fp32) if autocast_dtype is not None else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


@torch.no_grad()
def rerank_scores(model, tokenizer, pairs: list[tuple[str, str]], queries: dict[str, str],
                  collection: dict[str, str], max_length: int, batch_size: int, device,
                  autocast_dtype=None, progress=None) -> list[float]:
    """Model scores for (qid, pid) pairs, in the order given. Batches are length-sorted to pad less."""
    model.eval()
    order = sorted(range(len(pairs)), key=lambda i: len(collection[pairs[i][1]]))
    scores = [0.0] * len(pairs)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = tokenizer([queries[pairs[i][0]] for i in chunk], [collection[pairs[i][1]] for i in chunk],
                          padding=True, truncation="only_second", max_length=max_length,
                          return_tensors="pt").to(device)
        with fp32_head(model, autocast_dtype), torch.autocast(device.type, dtype=autocast_dtype,
                                                              enabled=autocast_dtype is not None):
            logits = model(**batch).logits.view(-1).float()
        for i, value in zip(chunk, logits.tolist()):
            scores[i] = value
        if progress:
            progress(len(chunk))
    return scores


def to_run(pairs: list[tuple[str, str]], scores: list[float]) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for (qid, pid), score in zip(pairs, scores):
        run.setdefault(qid, {})[pid] = score
    return run


def interpolate(first_stage: dict[str, dict[str, float]], reranked: dict[str, dict[str, float]],
                first_stage_weight: float) -> dict[str, dict[str, float]]:
    """weight·first stage + (1 − weight)·model, each min-max normalised within the query's
    reranked candidates, so the two scales are comparable."""
    combined = {}
    for qid, scores in reranked.items():
        model = _min_max(scores)
        first = _min_max({pid: first_stage[qid][pid] for pid in scores})
        combined[qid] = {pid: first_stage_weight * first[pid] + (1 - first_stage_weight) * model[pid]
                         for pid in scores}
    return combined


def _min_max(scores: dict[str, float]) -> dict[str, float]:
    low, high = min(scores.values()), max(scores.values())
    span = high - low or 1.0
    return {pid: (value - low) / span for pid, value in scores.items()}


def append_tail(first_stage: dict[str, dict[str, float]], reranked: dict[str, dict[str, float]],
                depth: int) -> dict[str, dict[str, float]]:
    """Reranked top-`depth` followed by the rest of the first-stage ranking in its own order,
    scored below every reranked passage, so recall beyond the depth is unchanged."""
    full = {}
    for qid, scores in reranked.items():
        floor = min(scores.values())
        tail = [pid for pid, _ in ranked(first_stage[qid])[depth:]]
        full[qid] = {**scores, **{pid: floor - 1.0 - i for i, pid in enumerate(tail)}}
    return full
