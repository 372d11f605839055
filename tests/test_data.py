import pytest

from trainables.data import (RetrievalData, check_batch_split, micro_loss_weight, read_collection, read_qrels,
                             read_queries, read_run, split_queries, split_sizes, training_pairs, worker_batches)
from trainables.errors import UsageError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("reader,name,text,needle", [
    (read_collection, "collection.tsv", "1\tok\n2 no tab\n", "collection.tsv:2"),
    (read_collection, "collection.tsv", "1\ta\n1\tb\n", "duplicate pid '1'"),
    (read_qrels, "qrels.txt", "1 0 7 2\n1 0 8 x\n", "qrels.txt:2"),
    (read_run, "run.trec", "1 Q0 7 1 3.2 t\n1 Q0 8 2 t\n", "run.trec:2"),
    (read_run, "run.trec", "", "no results"),
])
def test_malformed_files_name_file_and_line(tmp_path, reader, name, text, needle):
    with pytest.raises(UsageError, match=needle):
        reader(write(tmp_path, name, text))


@pytest.mark.parametrize("reader,name,raw,needle", [
    (read_queries, "queries.tsv", b"1\tok\n2\tcaf\xe9\n", "queries.tsv:2: not valid text: byte 0xe9 at column 6 "),
    (read_collection, "collection.tsv", b"1\ta\x00b\n", "collection.tsv:1: not valid text: a NUL byte at column 4"),
    (read_run, "run.trec", b"1 Q0 7 1 3.2 t\n\n1 Q0 8 2 3.1 \xff\n", "run.trec:3: not valid text: byte 0xff"),
    (read_qrels, "qrels.txt", b"1 0 7 2\x00\n", "qrels.txt:1: not valid text: a NUL byte"),
])
def test_files_that_are_not_text_name_file_and_line(tmp_path, reader, name, raw, needle):
    (tmp_path / name).write_bytes(raw)
    with pytest.raises(UsageError, match=needle):
        reader(tmp_path / name)


def test_utf8_beyond_ascii_is_text(tmp_path):
    (tmp_path / "queries.tsv").write_text("1\tcafé ünïcode 検索\n", encoding="utf-8")
    assert read_queries(tmp_path / "queries.tsv") == {"1": "café ünïcode 検索"}


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="file not found"):
        read_collection(tmp_path / "collection.tsv")


def test_directory_checks_qrels_queries(tmp_path):
    write(tmp_path, "collection.tsv", "p1\ta\np2\tb\n")
    write(tmp_path, "queries.tsv", "q1\tquery\n")
    write(tmp_path, "qrels.txt", "q2 0 p1 1\n")
    write(tmp_path, "run.trec", "q1 Q0 p1 1 2.0 t\n")
    with pytest.raises(UsageError, match="'q2'"):
        RetrievalData.load(tmp_path)


def test_embedded_split_and_pairs():
    from tests.conftest import EMBEDDED
    data = RetrievalData.load(EMBEDDED)
    train, dev = split_queries(data, 0.2, seed=0)
    assert not set(train) & set(dev) and len(dev) == round(0.2 * (len(train) + len(dev)))
    assert (train, dev) == split_queries(data, 0.2, seed=0)
    pairs = training_pairs(data, train[:10], negatives_per_query=3, negative_depth=20, positive_level=2,
                           graded=False, seed=0)
    positives = [p for p in pairs if p.label == 1.0]
    assert len(positives) == 10 and len(pairs) == 40
    for pair in pairs:  # binary mode: negatives are never judged relevant or partially relevant
        assert data.qrels[pair.qid].get(pair.pid, 0) == (3 if pair.label else 0)


@pytest.mark.parametrize("batch,world_size,accum", [(8, 1, 1), (8, 2, 1), (8, 2, 2), (8, 4, 2), (64, 3, 1),
                                                    (15, 2, 1), (64, 2, 3), (7, 3, 2)])
def test_worker_batches_partition_each_global_batch(batch, world_size, accum):
    per_rank = [worker_batches(150, epoch=1, seed=3, batch_size=batch, grad_accum=accum, rank=r,
                               world_size=world_size) for r in range(world_size)]
    steps = len(per_rank[0])
    assert steps == 150 // batch and all(len(p) == steps for p in per_rank)  # same steps on every rank
    seen = []
    for step in range(steps):
        micro = [m for rank in per_rank for m in rank[step]]
        batch_pairs = [i for m in micro for i in m]
        assert len(batch_pairs) == batch and len(set(batch_pairs)) == batch
        assert all(len(rank[step]) == accum for rank in per_rank)
        assert max(map(len, micro)) - min(map(len, micro)) <= 1 and min(map(len, micro)) >= 1
        seen += batch_pairs
    assert len(set(seen)) == steps * batch


def test_64_over_3_workers_is_22_21_21():
    assert [len(worker_batches(64, 0, 0, 64, 1, rank, 3)[0][0]) for rank in range(3)] == [22, 21, 21]
    assert split_sizes(21, 2) == [11, 10]


@pytest.mark.parametrize("batch,world_size,accum", [(64, 3, 1), (15, 2, 1), (64, 2, 3), (7, 3, 2), (8, 2, 2)])
def test_loss_weights_make_the_ddp_average_the_global_mean(batch, world_size, accum):
    # DDP averages the ranks' gradients; weighted micro-batch means must add up to the global mean.
    sizes = [len(m) for r in range(world_size) for m in worker_batches(batch, 0, 0, batch, accum, r, world_size)[0]]
    weights = [micro_loss_weight(size, batch, world_size) for size in sizes]
    per_pair = [w / size / world_size for w, size in zip(weights, sizes)]
    assert per_pair == pytest.approx([1 / batch] * len(sizes))


def test_batch_smaller_than_its_micro_batches_is_an_error():
    with pytest.raises(UsageError, match="batch_size=3 is smaller than 2 worker.*grad_accum=2"):
        worker_batches(50, 0, 0, batch_size=3, grad_accum=2, rank=0, world_size=2)
    check_batch_split(4, 2, 2)  # one pair per micro-batch is enough


@pytest.mark.parametrize("batch,world_size,accum,group", [(18, 1, 1, 9), (18, 2, 1, 9), (36, 2, 2, 9),
                                                          (30, 3, 1, 2), (14, 2, 3, 2), (45, 2, 2, 9)])
def test_listwise_batches_keep_every_group_in_one_micro_batch(batch, world_size, accum, group):
    num_pairs = 20 * group  # 20 groups: pairs g·group … g·group + group − 1
    per_rank = [worker_batches(num_pairs, 1, 3, batch, accum, r, world_size, group=group) for r in range(world_size)]
    steps = len(per_rank[0])
    assert steps == num_pairs // batch and all(len(p) == steps for p in per_rank)
    seen = []
    for step in range(steps):
        micro = [list(map(int, m)) for rank in per_rank for m in rank[step]]
        for m in micro:
            assert m and len(m) % group == 0
            for start in range(0, len(m), group):  # a whole group, in order, starting at a group boundary
                assert m[start] % group == 0 and m[start:start + group] == list(range(m[start], m[start] + group))
        batch_pairs = [i for m in micro for i in m]
        assert len(batch_pairs) == batch and len(set(batch_pairs)) == batch
        sizes = [len(m) for m in micro]  # loss weights by share still add up to the global mean
        assert sum(micro_loss_weight(s, batch, world_size) / world_size for s in sizes) == pytest.approx(1.0)
        seen += batch_pairs
    assert len(set(seen)) == steps * batch


def test_groups_of_one_are_the_pointwise_order():
    assert [list(m) for m in worker_batches(40, 2, 5, 8, 2, 1, 2, group=1)[3]] == \
        [list(m) for m in worker_batches(40, 2, 5, 8, 2, 1, 2)[3]]


def test_a_listwise_batch_must_hold_whole_groups():
    with pytest.raises(UsageError, match="batch_size=64 is not a multiple of the group size 9"):
        check_batch_split(64, 1, 1, group=9)
    with pytest.raises(UsageError, match="batch_size=18 is smaller than 2 worker.*grad_accum=2 × 9 pairs per group"):
        check_batch_split(18, 2, 2, group=9)
    check_batch_split(36, 2, 2, group=9)  # one group per micro-batch is enough
