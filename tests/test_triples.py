import pytest

from tests.conftest import EMBEDDED
from trainables.data import RetrievalData
from trainables.errors import UsageError
from trainables.triples import find_triples, read_triples, triple_pairs


@pytest.fixture
def data():
    return RetrievalData.load(EMBEDDED)


def test_id_triples_become_positive_and_negative_pairs_without_dev_queries(data, tmp_path):
    qids, pids = sorted(data.queries)[:3], sorted(data.collection)[:4]
    path = tmp_path / "triples.tsv"
    path.write_text("".join(f"{q}\t{pids[0]}\t{pids[1]}\n" for q in qids))
    triples = read_triples(path, data)
    pairs = triple_pairs(triples, data, dev_qids=[qids[0]])
    assert [(p.qid, p.pid, p.label) for p in pairs] == [
        (qids[1], pids[0], 1.0), (qids[1], pids[1], 0.0), (qids[2], pids[0], 1.0), (qids[2], pids[1], 0.0)]
    assert find_triples(tmp_path) == path


def test_text_triples_get_their_own_ids_and_respect_limit(data, tmp_path):
    path = tmp_path / "triples.train.tsv"
    path.write_text("what is x\tx is a thing\tunrelated\nwhat is y\ty is a thing\tunrelated\n")
    triples = read_triples(path, data, limit=1)
    assert len(triples) == 1
    qid, pos, neg = triples[0]
    assert data.queries[qid] == "what is x" and data.collection[pos] == "x is a thing" and qid.startswith("tq")


def test_malformed_and_unknown_ids_name_the_line(data, tmp_path):
    q, p = sorted(data.queries)[0], sorted(data.collection)[0]
    path = tmp_path / "triples.tsv"
    path.write_text(f"{q}\t{p}\t{p}\n{q}\t{p}\n")
    with pytest.raises(UsageError, match="triples.tsv:2"):
        read_triples(path, data)
    path.write_text(f"{q}\t{p}\t{p}\n{q}\t{p}\tghost\n")
    with pytest.raises(UsageError, match="triples.tsv:2.*'ghost'"):
        read_triples(path, data)
