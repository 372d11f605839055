"""trainables/prepared.py: the data dir validated once and memory-mapped by every process."""
import multiprocessing as mp
import os
import shutil

import pytest

from tests.conftest import EMBEDDED
from trainables.data import RetrievalData, read_collection
from trainables.errors import UsageError
from trainables.prepared import Prepared, line_blocks, prepare


@pytest.fixture
def data_dir(tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(EMBEDDED, copy)
    return copy


def test_a_view_holds_what_the_tsv_reading_holds_for_its_queries(tmp_path):
    data = RetrievalData.load(EMBEDDED)
    prepared = Prepared(prepare(EMBEDDED, cache_root=tmp_path))
    qids = sorted(data.qrels)[:7]
    view = prepared.view(qids)
    assert view.queries == {q: data.queries[q] for q in qids}
    assert view.qrels == {q: data.qrels[q] for q in qids} and view.run == {q: data.run[q] for q in qids}
    assert set(view.collection) == {p for q in qids for p in [*data.run[q], *data.qrels[q]] if p in data.collection}
    assert all(view.collection[p] == data.collection[p] for p in view.collection)
    assert view.judged_retrieved() == data.judged_retrieved() == prepared.usable_qids()
    assert prepared.lengths("passages").tolist() == [len(t) for t in read_collection(EMBEDDED / "collection.tsv").values()]


def test_the_prepared_form_is_reused_and_an_edited_file_makes_a_new_one(data_dir, tmp_path):
    first = prepare(data_dir, cache_root=tmp_path / "cache")
    stamp = (first / "passages.arrow").stat().st_mtime_ns
    assert prepare(data_dir, cache_root=tmp_path / "cache") == first
    assert (first / "passages.arrow").stat().st_mtime_ns == stamp
    text = (data_dir / "collection.tsv").read_text()
    (data_dir / "collection.tsv").write_text(text.replace("\t", "\tedited ", 1))
    second = prepare(data_dir, cache_root=tmp_path / "cache")
    assert second != first and Prepared(second).passage_texts([0])[0].startswith("edited ")


def test_a_truncated_copy_is_detected_and_rebuilt(data_dir, tmp_path):
    folder = prepare(data_dir, cache_root=tmp_path / "cache")
    size = (folder / "passages.arrow").stat().st_size
    with open(folder / "passages.arrow", "r+b") as handle:
        handle.truncate(size // 2)
    assert prepare(data_dir, cache_root=tmp_path / "cache") == folder
    assert (folder / "passages.arrow").stat().st_size == size
    assert len(Prepared(folder).passages) == len(read_collection(data_dir / "collection.tsv"))


def prepare_in_child(args):
    data_dir, cache = args
    return str(prepare(data_dir, cache_root=cache))


def test_processes_preparing_the_same_data_at_once_end_with_one_good_copy(data_dir, tmp_path):
    with mp.get_context("spawn").Pool(4) as pool:
        folders = set(pool.map(prepare_in_child, [(data_dir, tmp_path / "cache")] * 4))
    assert len(folders) == 1 and os.listdir(tmp_path / "cache") == [os.path.basename(folders.pop())]
    assert Prepared(prepare(data_dir, cache_root=tmp_path / "cache")).usable_qids()


@pytest.mark.parametrize("name,transform,needle", [
    ("collection.tsv", lambda s: s.replace("\n", "\nno tab here\n", 1), "collection.tsv:2: expected 'pid<TAB>text'"),
    ("collection.tsv", lambda s: s + s.splitlines()[0] + "\n", "duplicate pid"),
    ("queries.tsv", lambda s: s.replace("\n", "\n\tno id\n", 1), "queries.tsv:2"),
    ("run.bm25.trec", lambda s: s.split()[0] + " Q0 ghost 1 9.0 x\n" + s, "'ghost'"),
    ("collection.tsv", lambda s: s.replace("\t", "\t\x00", 1), "collection.tsv:1: not valid text: a NUL byte"),
])
def test_bad_files_give_the_tsv_readers_file_line_errors_and_leave_nothing(data_dir, tmp_path, name, transform,
                                                                           needle):
    path = data_dir / name
    path.write_text(transform(path.read_text()))
    with pytest.raises(UsageError, match=needle):
        prepare(data_dir, cache_root=tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
def test_blocks_end_at_line_ends_and_hold_every_byte(tmp_path, size):
    path = tmp_path / "f.tsv"
    path.write_bytes(b"a\tone\nbb\ttwo two\n\nc\tthree")  # no newline at the end
    blocks = list(line_blocks(path, size))
    assert b"".join(blocks) == path.read_bytes()
    assert all(block.endswith(b"\n") for block in blocks[:-1])


def test_a_line_of_blanks_is_skipped_as_the_tsv_reader_skips_it(data_dir, tmp_path):
    path = data_dir / "collection.tsv"
    path.write_text(path.read_text().replace("\n", "\n   \n", 1))
    prepared = Prepared(prepare(data_dir, cache_root=tmp_path / "cache"))
    assert prepared.passages.column("pid").to_pylist() == list(read_collection(path))


@pytest.mark.parametrize("which,folds", [("embedded", 0), ("dl20", 5)])
def test_a_trial_trains_and_scores_on_exactly_what_the_tsv_reading_gave(which, folds, request, tmp_path):
    """Regression: same split, same seed → the same pairs in the same order and the same dev and
    test judgments, runs and texts as the TSV reading, hence the same metrics."""
    from trainables.config import TrainConfig
    from trainables.data import three_way_split, training_pairs
    from trainables.loop import load_trial_data
    from trainables.prepared import prepare
    directory = EMBEDDED if which == "embedded" else request.getfixturevalue("dl20")
    cfg = TrainConfig.from_dict({"model": "x", "data_dir": str(directory), "folds": folds, "seed": 3,
                                 "prepared": str(prepare(directory, cache_root=tmp_path))})
    trial = load_trial_data(cfg)
    data = RetrievalData.load(directory)
    train, dev, test = three_way_split(data, cfg.dev_fraction, cfg.split_seed, cfg.folds, cfg.test_fold)
    pairs = training_pairs(data, train, cfg.negatives_per_query, cfg.negative_depth, cfg.positive_level,
                           cfg.graded_labels, cfg.seed)
    assert trial.id_pairs() == pairs and trial.dev_qids == dev
    assert trial.texts([0, 1]) == ([data.queries[p.qid] for p in pairs[:2]],
                                   [data.collection[p.pid] for p in pairs[:2]], [p.label for p in pairs[:2]])
    view = trial.eval
    assert all(view.run[q] == data.run[q] and view.qrels[q] == data.qrels[q] for q in dev + test)
    assert all(view.collection[p] == data.collection[p] for q in dev + test for p in data.run[q])
    assert three_way_split(view, cfg.dev_fraction, cfg.split_seed, cfg.folds, cfg.test_fold) == (train, dev, test)


@pytest.mark.parametrize("own_queries", [False, True])
def test_an_eval_set_is_prepared_and_viewed_as_its_files_read(tmp_path, own_queries):
    from tests.eval_data import hold_out
    from trainables.data import read_qrels, read_queries, read_run
    held = hold_out(EMBEDDED, tmp_path / "data", "held", own_queries=own_queries)
    folder = tmp_path / "data" / "eval" / "held"
    prepared = Prepared(prepare(tmp_path / "data", cache_root=tmp_path / "cache"))
    assert list(prepared.eval_sets) == ["held"] and prepared.eval_set("held").usable_qids() == held
    assert not set(held) & set(prepared.usable_qids())
    view = prepared.view(held[:5], eval_set="held")
    qrels, run = read_qrels(folder / "qrels.txt"), read_run(folder / "run.bm25.trec")
    texts = read_queries((folder if own_queries else EMBEDDED) / "queries.tsv")
    assert view.qrels == {q: qrels[q] for q in held[:5]} and view.run == {q: run[q] for q in held[:5]}
    assert view.queries == {q: texts[q] for q in held[:5]} and view.judged_retrieved() == held
    collection = read_collection(EMBEDDED / "collection.tsv")
    assert view.collection == {p: collection[p] for q in held[:5] for p in [*run[q], *qrels[q]] if p in collection}
    assert (prepared.folder / "eval" / "held" / "queries.arrow").is_file() == own_queries


def test_an_eval_set_s_files_are_part_of_the_cache_key(tmp_path):
    from tests.eval_data import hold_out
    hold_out(EMBEDDED, tmp_path / "data", "held")
    first = prepare(tmp_path / "data", cache_root=tmp_path / "cache")
    qrels = tmp_path / "data" / "eval" / "held" / "qrels.txt"
    qrels.write_text("\n".join(qrels.read_text().splitlines()[1:]) + "\n")
    second = prepare(tmp_path / "data", cache_root=tmp_path / "cache")
    shutil.copytree(tmp_path / "data" / "eval" / "held", tmp_path / "data" / "eval" / "again")
    third = prepare(tmp_path / "data", cache_root=tmp_path / "cache")
    assert len({first, second, third}) == 3 and list(Prepared(third).eval_sets) == ["again", "held"]
    assert len(Prepared(first).eval_set("held").qrels) == len(Prepared(second).eval_set("held").qrels) + 1


@pytest.mark.parametrize("edit_set,needle", [
    (lambda f: (f / "qrels.txt").unlink(), "eval/held/qrels.txt: file not found"),
    (lambda f: (f / "qrels.txt").write_text("ghost 0 2000001 2\n" + (f / "qrels.txt").read_text()),
     "eval/held/qrels.txt: query 'ghost' is not in"),
    (lambda f: (f / "run.bm25.trec").write_text((f / "run.bm25.trec").read_text().replace(" Q0 ", " Q0 ghost-", 1)),
     "eval/held/run.bm25.trec: passage 'ghost-"),
    (lambda f: (f / "qrels.txt").write_text("x 0 y\n"), "eval/held/qrels.txt:1: expected 'qid 0 pid rel'"),
    (lambda f: (f / "queries.tsv").write_text("only-id\n"), "eval/held/queries.tsv:1: expected 'qid<TAB>text'"),
])
def test_bad_eval_set_files_give_file_line_errors(tmp_path, edit_set, needle):
    from tests.eval_data import hold_out
    hold_out(EMBEDDED, tmp_path / "data", "held")
    edit_set(tmp_path / "data" / "eval" / "held")
    with pytest.raises(UsageError, match=needle):
        prepare(tmp_path / "data", cache_root=tmp_path / "cache")


def test_with_a_dev_set_every_top_level_query_trains_and_dev_is_a_seeded_sample(tmp_path):
    from tests.eval_data import hold_out
    from trainables.config import TrainConfig
    from trainables.loop import load_trial_data
    from trainables.split import split_queries
    held = hold_out(EMBEDDED, tmp_path / "data", "held")
    folder = prepare(tmp_path / "data", cache_root=tmp_path / "cache")
    prepared = Prepared(folder)
    cfg = TrainConfig.from_dict({"model": "x", "data_dir": str(tmp_path / "data"), "prepared": str(folder),
                                 "dev_set": "held", "max_dev_queries": 10})
    split = split_queries(prepared, cfg)
    assert split.train == prepared.usable_qids() and split.test == []
    assert len(split.dev) == 10 and set(split.dev) < set(held) and split.dev == sorted(split.dev)
    assert split.dev != held[:10] and split_queries(prepared, cfg).dev == split.dev  # sampled, seeded
    trial = load_trial_data(cfg)
    assert trial.dev_qids == split.dev and set(trial.eval.qrels) == set(split.dev)
    assert {p.qid for p in trial.id_pairs()} == set(prepared.usable_qids())
    no_dev_set = split_queries(prepared, TrainConfig.from_dict({"model": "x", "data_dir": str(tmp_path / "data")}))
    assert not set(no_dev_set.train + no_dev_set.dev) & set(held)  # an eval set is a test set only
