import shutil

import numpy as np
import pytest

from tests.conftest import EMBEDDED
from trainables.data import RetrievalData
from trainables.errors import UsageError
from trainables.prepared import Prepared, prepare
from trainables.triples import find_triples, triple_pairs


@pytest.fixture
def data_dir(tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(EMBEDDED, copy)
    return copy


def ids_of(prepared, pairs):
    q, p, label = pairs.rows(np.arange(len(pairs)))
    return list(zip(prepared.queries.column("qid").take(q).to_pylist(),
                    prepared.passages.column("pid").take(p).to_pylist(), label.tolist()))


def test_id_triples_become_positive_and_negative_pairs_without_dev_queries(data_dir, tmp_path):
    data = RetrievalData.load(data_dir)
    qids, pids = sorted(data.queries)[:3], sorted(data.collection)[:4]
    path = data_dir / "triples.tsv"
    path.write_text("".join(f"{q}\t{pids[0]}\t{pids[1]}\n" for q in qids))
    prepared = Prepared(prepare(data_dir, cache_root=tmp_path / "cache"))
    pairs = triple_pairs(prepared, [qids[0]], limit=None, seed=0)
    assert ids_of(prepared, pairs) == [
        (qids[1], pids[0], 1.0), (qids[1], pids[1], 0.0), (qids[2], pids[0], 1.0), (qids[2], pids[1], 0.0)]
    assert find_triples(data_dir) == path


def test_text_triples_get_their_own_ids_and_a_dev_query_is_matched_by_text(data_dir, tmp_path):
    data = RetrievalData.load(data_dir)
    dev_qid = sorted(data.queries)[0]
    (data_dir / "triples.train.tsv").write_text(
        f"what is x\tx is a thing\tunrelated\nwhat is y\ty is a thing\tunrelated\n{data.queries[dev_qid]}\ta\tb\n")
    prepared = Prepared(prepare(data_dir, cache_root=tmp_path / "cache"))
    pairs = triple_pairs(prepared, [dev_qid], limit=None, seed=0)
    q, p, labels = pairs.rows([0, 1, 2, 3])
    assert prepared.query_texts(q) == ["what is x", "what is x", "what is y", "what is y"]
    assert prepared.passage_texts(p) == ["x is a thing", "unrelated", "y is a thing", "unrelated"]
    assert labels.tolist() == [1, 0, 1, 0] and len(pairs) == 4  # the dev query's triple is left out
    assert prepared.queries.column("qid").take(q).to_pylist()[0] == "tq0"


def test_max_triples_is_a_seeded_sample_in_file_order(data_dir, tmp_path):
    data = RetrievalData.load(data_dir)
    qids, pids = sorted(data.queries)[:50], sorted(data.collection)[:2]
    (data_dir / "triples.tsv").write_text("".join(f"{q}\t{pids[0]}\t{pids[1]}\n" for q in qids))
    prepared = Prepared(prepare(data_dir, cache_root=tmp_path / "cache"))
    first, again, other = (triple_pairs(prepared, [], limit=10, seed=s) for s in (1, 1, 2))
    assert len(first) == 20 and ids_of(prepared, first) == ids_of(prepared, again)
    chosen = [q for q, _, label in ids_of(prepared, first) if label == 1]
    assert chosen == sorted(chosen, key=qids.index) and chosen != qids[:10]
    assert ids_of(prepared, other) != ids_of(prepared, first)


def test_malformed_and_unknown_ids_name_the_line(data_dir, tmp_path):
    data = RetrievalData.load(data_dir)
    q, p = sorted(data.queries)[0], sorted(data.collection)[0]
    path = data_dir / "triples.tsv"
    path.write_text(f"{q}\t{p}\t{p}\n{q}\t{p}\n")
    with pytest.raises(UsageError, match="triples.tsv:2"):
        prepare(data_dir, cache_root=tmp_path / "cache")
    path.write_text(f"{q}\t{p}\t{p}\n\n{q}\t{p}\tghost\n")
    with pytest.raises(UsageError, match="triples.tsv:3.*'ghost'"):
        prepare(data_dir, cache_root=tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())  # nothing half-written
