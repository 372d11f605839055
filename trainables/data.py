"""Retrieval data in MS MARCO / TREC formats, training pairs, and each worker's share of a batch.

Formats: collection.tsv (pid<TAB>text), queries.tsv (qid<TAB>text), qrels (qid 0 pid rel),
runs (qid Q0 pid rank score tag), triples (qid<TAB>pos_pid<TAB>neg_pid). Every reader names the
file and line of the first malformed record.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.errors import UsageError
from trainables.paths import require_file

RUN_NAMES = ("run.trec", "run.bm25.trec")


def _lines(path: Path):
    with open(require_file(path), encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            check_text(line, path, number)
            if line.strip():
                yield number, line


def check_text(line: str, path, number: int) -> None:
    """A NUL or a byte that is not UTF-8 fails naming its file, line and column."""
    if "\x00" in line:
        raise UsageError(f"{path}:{number}: not valid text: a NUL byte at column {line.index(chr(0)) + 1}")
    if not line.isascii():  # isascii is O(1); only other lines pay for an encode
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as err:  # surrogateescape made each byte that is not UTF-8 a surrogate
            byte = ord(line[err.start]) - 0xDC00
            raise UsageError(f"{path}:{number}: not valid text: byte 0x{byte:02x} at column {err.start + 1} "
                             f"is not UTF-8") from None


def _read_tsv_texts(path: Path, what: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    for number, line in _lines(Path(path)):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip():
            raise UsageError(f"{path}:{number}: expected '{what}<TAB>text', got {line[:80]!r}")
        key = parts[0].strip()
        if key in texts:
            raise UsageError(f"{path}:{number}: duplicate {what} {key!r}")
        texts[key] = parts[1]
    if not texts:
        raise UsageError(f"{path}: no {what}s in file")
    return texts


def read_collection(path) -> dict[str, str]:
    return _read_tsv_texts(Path(path), "pid")


def read_queries(path) -> dict[str, str]:
    return _read_tsv_texts(Path(path), "qid")


def read_qrels(path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _lines(Path(path)):
        parts = line.split()
        if len(parts) != 4 or not _is_int(parts[3]):
            raise UsageError(f"{path}:{number}: expected 'qid 0 pid rel', got {line[:80]!r}")
        qid, _, pid, rel = parts
        judged = qrels.setdefault(qid, {})
        if pid in judged:
            raise UsageError(f"{path}:{number}: duplicate judgment for query {qid!r} passage {pid!r}")
        judged[pid] = int(rel)
    if not qrels:
        raise UsageError(f"{path}: no judgments in file")
    return qrels


def read_run(path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for number, line in _lines(Path(path)):
        parts = line.split()
        if len(parts) != 6 or not _is_int(parts[3]) or not _is_float(parts[4]):
            raise UsageError(f"{path}:{number}: expected 'qid Q0 pid rank score tag', got {line[:80]!r}")
        qid, _, pid, _, score, _ = parts
        ranked = run.setdefault(qid, {})
        if pid in ranked:
            raise UsageError(f"{path}:{number}: passage {pid!r} appears twice for query {qid!r}")
        ranked[pid] = float(score)
    if not run:
        raise UsageError(f"{path}: no results in run file")
    return run


def write_run(run: dict[str, dict[str, float]], path, tag: str) -> None:
    """Write a TREC run, ranks in trec_eval order (score desc, pid desc); atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for qid, scores in run.items():
            for rank, (pid, score) in enumerate(ranked(scores), start=1):
                out.write(f"{qid} Q0 {pid} {rank} {score:.6f} {tag}\n")
    tmp.replace(path)


def ranked(scores: dict[str, float]) -> list[tuple[str, float]]:
    """trec_eval's order: score descending, ties by docid descending (string order)."""
    return sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


@dataclass
class RetrievalData:
    """A data directory: collection, queries, graded qrels and a first-stage run."""

    collection: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    run: dict[str, dict[str, float]]
    run_path: Path
    # A prepared view holds some queries only (trainables/prepared.py): the split still draws from
    # every judged, retrieved query of the whole data, which the view names here.
    usable: list[str] | None = None

    def judged_retrieved(self) -> list[str]:
        return self.usable if self.usable is not None else sorted(set(self.qrels) & set(self.run))

    @classmethod
    def load(cls, directory, run_file=None) -> "RetrievalData":
        """The files of `directory`; the first-stage run is `run_file` when given (e.g. a BM25
        run the search made because the directory has none)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise UsageError(f"{directory}: data directory not found")
        run_path = Path(run_file) if run_file else find_run_file(directory)
        data = cls(
            collection=read_collection(directory / "collection.tsv"),
            queries=read_queries(directory / "queries.tsv"),
            qrels=read_qrels(directory / "qrels.txt"),
            run=read_run(run_path),
            run_path=run_path,
        )
        data.check()
        return data

    def check(self) -> None:
        for qid in self.qrels:
            if qid not in self.queries:
                raise UsageError(f"qrels name query {qid!r}, which is not in queries.tsv")
        for qid, scores in self.run.items():
            if qid not in self.queries:
                raise UsageError(f"{self.run_path}: query {qid!r} is not in queries.tsv")
            for pid in scores:
                if pid not in self.collection:
                    raise UsageError(f"{self.run_path}: passage {pid!r} (query {qid}) is not in collection.tsv")
        if not set(self.qrels) & set(self.run):
            raise UsageError(f"{self.run_path}: no query of the run has judgments in qrels.txt")


def find_run_file(directory: Path, required: bool = True) -> Path | None:
    directory = Path(directory)
    for name in RUN_NAMES:
        if (directory / name).is_file():
            return directory / name
    found = sorted(directory.glob("*.trec"))
    if len(found) == 1:
        return found[0]
    if not found:
        if not required:
            return None
        raise UsageError(f"{directory}: no first-stage run (*.trec); make one with python -m search.bm25")
    raise UsageError(f"{directory}: several run files ({', '.join(p.name for p in found)}); keep one")


def split_queries(data: RetrievalData, dev_fraction: float, seed: int, folds: int = 0,
                  test_fold: int = 0) -> tuple[list[str], list[str]]:
    """Seeded split of the judged, retrieved queries into (train, dev); every worker gets the same.
    With folds=k, fold `test_fold` of a query-level k-fold split is held out first (see test_queries)
    and train/dev come from the other folds."""
    train, dev, _ = three_way_split(data, dev_fraction, seed, folds, test_fold)
    return train, dev


def held_out_queries(data: RetrievalData, dev_fraction: float, seed: int, folds: int, test_fold: int) -> list[str]:
    """The held-out test fold: never trained on, never used to choose a trial."""
    return three_way_split(data, dev_fraction, seed, folds, test_fold)[2]


def three_way_split(data: RetrievalData, dev_fraction: float, seed: int, folds: int = 0,
                    test_fold: int = 0) -> tuple[list[str], list[str], list[str]]:
    usable = list(data.judged_retrieved())
    random.Random(seed).shuffle(usable)
    test: list[str] = []
    if folds:
        if not 0 <= test_fold < folds or folds < 2:
            raise UsageError(f"test fold {test_fold} of {folds}: need folds >= 2 and 0 <= test fold < folds")
        test = usable[test_fold::folds]
        usable = [qid for index, qid in enumerate(usable) if index % folds != test_fold]
    n_dev = max(1, round(len(usable) * dev_fraction))
    if n_dev >= len(usable):
        raise UsageError(f"only {len(usable)} judged queries left for training: too few to split into train and dev")
    return sorted(usable[n_dev:]), sorted(usable[:n_dev]), sorted(test)


@dataclass(frozen=True)
class Pair:
    qid: str
    pid: str
    label: float


def training_pairs(data: RetrievalData, qids: list[str], negatives_per_query: int, negative_depth: int,
                   positive_level: int, graded: bool, seed: int, top_grade: int | None = None) -> list[Pair]:
    """Judged positives plus first-stage hard negatives for each training query.

    Passages judged 0 < rel < positive_level are neither positive nor negative unless labels are
    graded: in binary mode they are ambiguous, so they are left out. top_grade: the highest grade
    of the whole qrels (default: of data's).
    """
    rng = random.Random(seed)
    top_grade = top_grade or max(max(judged.values()) for judged in data.qrels.values()) or 1
    pairs: list[Pair] = []
    for qid in qids:
        judged = data.qrels.get(qid, {})
        for pid, rel in sorted(judged.items()):
            if pid not in data.collection:
                continue  # judged passages outside the collection cannot be read
            if graded and rel > 0:
                pairs.append(Pair(qid, pid, rel / top_grade))
            elif rel >= positive_level:
                pairs.append(Pair(qid, pid, 1.0))
        candidates = [pid for pid, _ in ranked(data.run.get(qid, {}))[:negative_depth]
                      if judged.get(pid, 0) == 0]
        for pid in rng.sample(candidates, min(negatives_per_query, len(candidates))):
            pairs.append(Pair(qid, pid, 0.0))
    if not pairs:
        raise UsageError("no training pairs: the training queries have no judged passages in the collection")
    return pairs


LENGTH_GROUP = 32  # global batches per length-sorted group: long enough to pad little, short enough to stay random


def epoch_order(num_pairs: int, epoch: int, seed: int, lengths=None, batch_size: int = 1) -> list[int]:
    """The epoch's order of pair indices. With lengths, pairs are grouped by length in the way
    of transformers' group_by_length: a random permutation is cut into groups of LENGTH_GROUP
    global batches, each group is sorted by length and cut into batches, and the batches are
    shuffled, so batch contents stay random while each batch pads to similar lengths."""
    # Distributed workers must agree: every rank draws the same permutation from (seed, epoch),
    # then takes its own slice of each batch, so no pair is seen twice in one step.
    if num_pairs > PYTHON_SHUFFLE_MAX:
        return large_epoch_order(num_pairs, seed * 100_003 + epoch, lengths, batch_size)
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(num_pairs))
    rng.shuffle(order)
    if lengths is None:
        return order
    span = LENGTH_GROUP * batch_size
    grouped = [i for start in range(0, num_pairs, span)
               for i in sorted(order[start:start + span], key=lambda i: -lengths[i])]
    batches = [grouped[start:start + batch_size] for start in range(0, num_pairs, batch_size)]
    full, rest = batches[:num_pairs // batch_size], batches[num_pairs // batch_size:]
    rng.shuffle(full)  # the incomplete last batch stays last: it is the one dropped
    return [i for batch in full + rest for i in batch]


# Up to this many pairs the order is Python's seeded shuffle (a few seconds and ~40 bytes a pair);
# beyond, NumPy's PCG64 draws it as an int64 array in a fraction of the time and memory.
PYTHON_SHUFFLE_MAX = 1 << 22


def large_epoch_order(num_pairs: int, seed: int, lengths, batch_size: int) -> np.ndarray:
    """epoch_order's contract for tens of millions of pairs, in NumPy."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(num_pairs)
    if lengths is None:
        return order
    span = LENGTH_GROUP * batch_size
    for start in range(0, num_pairs, span):
        group = order[start:start + span]
        order[start:start + span] = group[np.argsort(-np.asarray(lengths)[group], kind="stable")]
    full = num_pairs // batch_size
    batches = order[:full * batch_size].reshape(full, batch_size)[rng.permutation(full)]
    return np.concatenate([batches.reshape(-1), order[full * batch_size:]])


def worker_batches(num_pairs: int, epoch: int, seed: int, batch_size: int, grad_accum: int,
                   rank: int, world_size: int, lengths=None, group: int = 1) -> list[list[list[int]]]:
    """For each optimiser step: this worker's micro-batches (lists of pair indices).

    The global batch (batch_size pairs) is split as evenly as possible over world_size workers and
    each worker's share over grad_accum micro-batches (64 over 3 workers: 22 + 21 + 21); sizes
    differ, so each micro-batch's loss is weighted by micro_loss_weight. The last incomplete global
    batch is dropped so every rank runs the same number of steps. With group > 1 (listwise: pairs
    g·group … g·group + group − 1 are one query's positive and its negatives), the order, the shares
    and the micro-batches are counted in whole groups, so no group is ever split.
    """
    check_batch_split(batch_size, world_size, grad_accum, group)
    order = group_order(epoch_order(num_pairs // group, epoch, seed, lengths, batch_size // group), group)
    shares = split_sizes(batch_size // group, world_size)
    return Steps(order, batch_size, group * sum(shares[:rank]),
                 [group * size for size in split_sizes(shares[rank], grad_accum)],
                 range(steps_per_epoch(num_pairs, batch_size)))


def group_order(order, group: int):
    """An order of groups as the order of their pairs (group g is pairs g·group … g·group + group − 1)."""
    if group == 1:
        return order
    return (np.asarray(order, dtype=np.int64)[:, None] * group + np.arange(group)).reshape(-1)


class Steps(Sequence):
    """One worker's micro-batches for each step of an epoch, cut from the epoch order on demand
    (a list of every step's index lists would cost more than the pairs at MS MARCO scale)."""

    def __init__(self, order, batch_size: int, begin: int, micro_sizes: list[int], steps: range):
        self.order, self.batch_size, self.begin, self.micro_sizes, self.steps = \
            order, batch_size, begin, micro_sizes, steps

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Steps(self.order, self.batch_size, self.begin, self.micro_sizes, self.steps[index])
        start = self.steps[index] * self.batch_size + self.begin
        micro = []
        for length in self.micro_sizes:
            micro.append(list(self.order[start:start + length]))
            start += length
        return micro


def split_sizes(total: int, parts: int) -> list[int]:
    """`total` items over `parts` as evenly as possible; the first total % parts get one more."""
    base, extra = divmod(total, parts)
    return [base + (index < extra) for index in range(parts)]


def micro_loss_weight(micro_size: int, batch_size: int, world_size: int) -> float:
    """The factor on a micro-batch's mean loss that makes DDP's gradient average over world_size
    ranks equal the gradient of the whole global batch's mean loss, however unevenly it is split."""
    return micro_size * world_size / batch_size


def steps_per_epoch(num_pairs: int, batch_size: int) -> int:
    if num_pairs < batch_size:
        raise UsageError(f"batch_size={batch_size} is larger than the {num_pairs} training pairs")
    return num_pairs // batch_size


def check_batch_split(batch_size: int, world_size: int, grad_accum: int, group: int = 1) -> None:
    """Every micro-batch needs at least one pair (one whole group): the only global batch that cannot be split."""
    if batch_size % group:
        raise UsageError(f"batch_size={batch_size} is not a multiple of the group size {group}: a listwise step "
                         f"takes whole groups (a query's positive and its negatives; judged data: "
                         f"1 + negatives_per_query pairs)")
    if batch_size // group < world_size * grad_accum:
        unit = "" if group == 1 else f" × {group} pairs per group"
        raise UsageError(f"batch_size={batch_size} is smaller than {world_size} worker(s) × grad_accum={grad_accum}"
                         f"{unit}: every micro-batch needs at least one {'pair' if group == 1 else 'whole group'}")
