import subprocess
import sys

import pytest
import torch

from trainables.checkpoint import save_checkpoint
from trainables.data import ranked, read_run
from trainables.evaluate import append_tail, interpolate
from trainables.models import load_reranker


def rerank(*args):
    return subprocess.run([sys.executable, "-m", "trainables.rerank", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def checkpoint(tiny_bert, tmp_path_factory):
    """A search-style checkpoint directory (model/ + state.pt) around the tiny BERT."""
    tokenizer, model = load_reranker(tiny_bert)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint_000001", model, tokenizer,
                           {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": 3,
                            "epoch": 0, "metrics": {"first_stage_weight": 0.3}})


def test_rerank_cli_writes_full_run_and_prints_metrics(dl20, checkpoint, tmp_path):
    out = tmp_path / "reranked.trec"
    done = rerank("--model", checkpoint, "--collection", dl20 / "collection.tsv", "--queries",
                  dl20 / "queries.tsv", "--run", dl20 / "run.bm25.trec", "--out", out, "--depth", 5,
                  "--max-length", 32, "--qrels", dl20 / "qrels.txt")
    assert done.returncode == 0, done.stderr[-3000:]
    first, reranked = read_run(dl20 / "run.bm25.trec"), read_run(out)
    assert set(reranked) == set(first)
    for qid, hits in first.items():
        assert set(reranked[qid]) == set(hits)  # same candidates: only the top 5 were reordered
        order = [pid for pid, _ in ranked(reranked[qid])]
        bm25_order = [pid for pid, _ in ranked(hits)]
        assert set(order[:5]) == set(bm25_order[:5]) and order[5:] == bm25_order[5:]
    assert "ndcg_at_10" in done.stdout and "first stage" in done.stdout
    assert "first-stage weight 0.3 (the checkpoint's" in done.stderr  # the weight the trial chose on dev
    recall_line = next(line for line in done.stdout.splitlines() if line.startswith("recall_at_100"))
    assert recall_line.split()[2] == recall_line.split()[5]  # reranking the top 5 cannot change R@100


def test_rerank_rejects_unknown_passage(dl20, checkpoint, tmp_path):
    run = tmp_path / "run.trec"
    run.write_text("23849 Q0 no-such-passage 1 3.0 x\n")
    done = rerank("--model", checkpoint, "--collection", dl20 / "collection.tsv", "--queries",
                  dl20 / "queries.tsv", "--run", run, "--out", tmp_path / "out.trec")
    assert done.returncode == 2 and "no-such-passage" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out.trec").exists()


def test_an_explicit_weight_overrides_the_checkpoints(dl20, checkpoint, tmp_path, capsys):
    from trainables.rerank import main, model_directory
    assert model_directory(str(checkpoint))[1] == 0.3
    assert model_directory(str(checkpoint / "model"))[1] == 0.0  # a bare model directory: the model alone
    args = ["--model", checkpoint, "--collection", dl20 / "collection.tsv", "--queries", dl20 / "queries.tsv",
            "--run", dl20 / "run.bm25.trec", "--depth", 3, "--max-length", 32]
    main([*map(str, args), "--out", str(tmp_path / "alone.trec"), "--first-stage-weight", "0"])
    assert "first-stage weight 0 (--first-stage-weight)" in capsys.readouterr().err
    main([*map(str, args), "--out", str(tmp_path / "chosen.trec")])
    assert read_run(tmp_path / "alone.trec") != read_run(tmp_path / "chosen.trec")


def test_interpolate_normalises_each_query():
    first = {"q": {"a": 10.0, "b": 20.0, "c": 30.0}}
    model = {"q": {"a": 1.0, "b": 0.0, "c": -1.0}}
    mixed = interpolate(first, model, 0.25)["q"]
    assert mixed == pytest.approx({"a": 0.75, "b": 0.25 * 0.5 + 0.75 * 0.5, "c": 0.25})


def test_append_tail_keeps_first_stage_order_below_reranked():
    first = {"q": {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5}}
    full = append_tail(first, {"q": {"a": -5.0, "b": 7.0}}, depth=2)["q"]
    assert sorted(full, key=full.get, reverse=True) == ["b", "a", "c", "d"]
