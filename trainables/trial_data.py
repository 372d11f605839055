"""What one trial trains on and is scored on, built alike by every worker and, before Ray
starts, by search.run (so a bad file or setting fails in seconds, not in a worker)."""
from __future__ import annotations

from trainables.config import TrainConfig
from trainables.data import Pair, RetrievalData, split_queries, three_way_split, training_pairs
from trainables.errors import UsageError
from trainables.triples import find_triples, read_triples, triple_pairs


def load_trial_data(cfg: TrainConfig) -> tuple[RetrievalData, list[Pair], list[str]]:
    """(data, training pairs, dev qids): a seeded split of the judged queries; pairs from the
    data dir's triples or from judged positives + first-stage hard negatives of the train queries."""
    data = RetrievalData.load(cfg.data_dir, cfg.run_file)
    train_qids, dev_qids = split_queries(data, cfg.dev_fraction, cfg.split_seed, cfg.folds, cfg.test_fold)
    train_qids, dev_qids = train_qids[:cfg.max_train_queries], dev_qids[:cfg.max_dev_queries]
    triples_path = find_triples(cfg.data_dir) if cfg.training_data != "judged" else None
    if cfg.training_data == "triples" and triples_path is None:
        raise UsageError(f"{cfg.data_dir}: training_data='triples' but there is no triples*.tsv")
    if triples_path:
        # Every dev and test query (not only the first max_dev_queries) stays out of training.
        _, dev_all, test = three_way_split(data, cfg.dev_fraction, cfg.split_seed, cfg.folds, cfg.test_fold)
        pairs = triple_pairs(read_triples(triples_path, data, cfg.max_triples), data, dev_all + test)
    else:
        pairs = training_pairs(data, train_qids, cfg.negatives_per_query, cfg.negative_depth,
                               cfg.positive_level, cfg.graded_labels, cfg.seed)
    return data, pairs, dev_qids
