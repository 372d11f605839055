"""TrainConfig: every setting one trial's training reads, built from the trial's config dict.

Keys are the field names; a key that is not a field raises UsageError naming it, so a typo in
a search space or a flag can never be silently ignored.
"""
from __future__ import annotations

import ast
import dataclasses
import numbers
import typing
from dataclasses import dataclass
from typing import Any, Optional

from trainables.errors import UsageError

# The one list of optimizers and schedules (trainables/optim.py builds each; spaces/ search them).
OPTIMIZERS = ("adamw", "lion", "apollo", "apollo_mini", "muon", "adamw_schedulefree")
SCHEDULE_FREE = ("adamw_schedulefree",)  # run with a constant schedule: they average their own iterates
SCHEDULERS = ("constant", "linear", "cosine", "wsd")
TRAINING_DATA = ("auto", "judged", "triples")
LOSSES = ("pointwise", "listwise", "margin_mse")  # trainables/losses.py


@dataclass(frozen=True)
class TrainConfig:
    # what is trained
    model: str
    data_dir: str
    max_length: int = 128
    # optimisation (the searched part)
    optimizer: str = "adamw"
    lr: float = 2e-5
    weight_decay: float = 0.01
    beta1: Optional[float] = None  # None: the optimiser's own default (AdamW 0.9/0.999, Lion 0.9/0.99)
    beta2: Optional[float] = None
    # Muon only: the AdamW lr of the parameters Muon does not take (embeddings, norms, biases, head);
    # `lr` is then Muon's own, for the encoder's hidden matrices.
    aux_lr: Optional[float] = None
    scheduler: str = "linear"
    warmup_ratio: float = 0.1
    wsd_decay_ratio: float = 0.1  # wsd: the final share of the steps over which lr decays linearly to 0
    grad_clip: float = 1.0
    # pointwise: BCE per pair; listwise: softmax cross-entropy over a query's positive and its hard
    # negatives (a group: 1 + negatives_per_query judged pairs, or a triple's 2), batch_size then a
    # multiple of the group; margin_mse: needs teacher scores, which no data carries yet.
    loss: str = "pointwise"
    # batch geometry: batch_size is the global batch per optimiser step, whatever the world size,
    # so the same config means the same optimisation on 1 or N workers.
    batch_size: int = 32
    grad_accum: int = 1
    epochs: int = 2
    bf16: bool = True  # autocast, only where the device has native bf16 (trainables/precision.py)
    compile: bool = False  # torch.compile the model: faster steps on GPUs after a one-off compile
    attn_implementation: Optional[str] = None  # e.g. "sdpa", "flash_attention_2" (ModernBERT unpadding)
    # Micro-batches of similar length: less padding, same pairs per step. Off by default: batches of
    # alike pairs are worse samples, and it cost dev nDCG@10 on the embedded data (docs/benchmarks.md).
    group_by_length: bool = False
    # Steps tokenised (and copied to the GPU) ahead on a background thread. None: 2 on a GPU, 0 on a
    # CPU, where every core already runs a torch thread and a tokenising thread would preempt one.
    prefetch_steps: Optional[int] = None
    seed: int = 0
    # training pairs and dev split. training_data: "judged" = judged positives + first-stage hard
    # negatives; "triples" = the data dir's triples*.tsv; "auto" = triples when there is a file.
    run_file: Optional[str] = None  # first-stage run; None: the one in data_dir
    # The data dir prepared once (trainables/prepared.py), set by search.run; None or missing on
    # this node: the worker prepares it into the system's temp dir itself.
    prepared: Optional[str] = None
    # {eval set: run file} for eval sets (data_dir/eval/<name>/) whose first-stage run search.run made
    eval_runs: Optional[dict] = None
    training_data: str = "auto"
    max_triples: Optional[int] = None
    dev_fraction: float = 0.2
    split_seed: int = 0
    folds: int = 0  # k > 0: query-level k-fold; fold test_fold is held out as test queries
    test_fold: int = 0
    negatives_per_query: int = 8
    negative_depth: int = 100  # hard negatives are drawn from this many first-stage candidates
    positive_level: int = 2  # rel >= this is relevant (TREC DL convention); also the metrics' level
    graded_labels: bool = False
    max_train_queries: Optional[int] = None
    max_dev_queries: Optional[int] = None
    # The eval set whose queries are the dev queries (max_dev_queries of them, a seeded sample); the
    # top-level split is then unused: every usable top-level query trains. None: the split's dev.
    dev_set: Optional[str] = None
    # evaluation
    rerank_depth: int = 100
    eval_batch_size: int = 64
    # Also report (dev metrics + checkpoint) every this many optimiser steps, so ASHA and a resume act
    # mid-epoch (MS MARCO's epochs take hours); None: at epoch ends only.
    eval_every: Optional[int] = None
    # Reranked score = w·first stage + (1 − w)·model, each min-max normalised per query. None (the
    # default): choose w on the dev queries each epoch (saved in the checkpoint; test folds, eval sets
    # and trainables.rerank use that choice), so a weak model leans on the first stage.
    # 0: the model alone.
    first_stage_weight: Optional[float] = None
    evaluate_test: bool = False  # score the final epoch on the test fold too (seed reruns only)
    # plumbing, not hyperparameters
    num_threads: Optional[int] = None  # torch intra-op threads per worker; None: torch's default

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise UsageError(f"unknown config key {key!r} (valid keys: {', '.join(sorted(known))})")
        for key in ("model", "data_dir"):
            if key not in values:
                raise UsageError(f"config key {key!r} is required")
        return cls(**values)

    def __post_init__(self):
        def need(ok: bool, key: str, why: str):
            if not ok:
                raise UsageError(f"config key {key!r}={getattr(self, key)!r}: {why}")

        # Types first: a value of the wrong type would otherwise fail as a TypeError in a comparison.
        for key, hint in typing.get_type_hints(TrainConfig).items():
            need(type_matches(getattr(self, key), hint), key, f"must be {type_name(hint)}")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        need(self.training_data in TRAINING_DATA, "training_data", f"must be one of {', '.join(TRAINING_DATA)}")
        need(self.scheduler in SCHEDULERS, "scheduler", f"must be one of {', '.join(SCHEDULERS)}")
        need(self.loss in LOSSES, "loss", f"must be one of {', '.join(LOSSES)}")
        # trainables/losses.py has MarginMSE; it runs once training pairs can carry a teacher's scores.
        need(self.loss != "margin_mse", "loss", "needs a teacher's score for each training pair, and no "
             "training data carries teacher scores yet: use 'pointwise' or 'listwise'")
        if self.loss != "pointwise":  # a group's pairs are scored against each other, not one by one
            need(not self.group_by_length, "group_by_length", "sorts pairs one by one: needs loss='pointwise'")
            need(not self.graded_labels, "graded_labels", "grades pairs one by one: needs loss='pointwise'")
            need(self.negatives_per_query >= 1, "negatives_per_query", "must be >= 1 with loss='listwise'")
        need(self.lr > 0, "lr", "must be > 0")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        need(0 < self.wsd_decay_ratio <= 1, "wsd_decay_ratio", "must be in (0, 1]")
        need(self.scheduler != "wsd" or self.warmup_ratio + self.wsd_decay_ratio <= 1, "wsd_decay_ratio",
             "warmup_ratio + wsd_decay_ratio must be <= 1")
        need(self.optimizer not in SCHEDULE_FREE or self.scheduler == "constant", "scheduler",
             f"{self.optimizer} is schedule-free: it needs scheduler 'constant' (warmup still applies)")
        need(self.optimizer != "muon" or self.aux_lr is not None, "aux_lr",
             "muon needs the AdamW lr of its non-matrix parameters")
        need(self.optimizer == "muon" or self.aux_lr is None, "aux_lr", "is for muon only")
        need(self.aux_lr is None or self.aux_lr > 0, "aux_lr", "must be > 0")
        need(self.grad_clip >= 0, "grad_clip", "must be >= 0 (0 disables clipping)")
        for key in ("batch_size", "grad_accum", "epochs", "max_length", "rerank_depth",
                    "eval_batch_size", "negative_depth"):
            need(getattr(self, key) >= 1, key, "must be >= 1")
        need(self.negatives_per_query >= 0, "negatives_per_query", "must be >= 0")
        need(0 < self.dev_fraction < 1, "dev_fraction", "must be in (0, 1)")
        need(self.folds == 0 or self.folds >= 2, "folds", "must be 0 (no test fold) or >= 2")
        need(0 <= self.test_fold < max(self.folds, 1), "test_fold", "must be in [0, folds)")
        need(self.first_stage_weight is None or 0 <= self.first_stage_weight <= 1, "first_stage_weight",
             "must be in [0, 1], or null to choose it on dev")
        need(not self.evaluate_test or self.folds >= 2, "evaluate_test", "needs folds >= 2 (a held-out test fold)")
        need(self.eval_every is None or self.eval_every >= 1, "eval_every", "must be >= 1, or null (epoch ends only)")
        need(self.dev_set is None or self.folds == 0, "dev_set", "a dev set's search tests on eval sets: needs folds=0")
        for key in ("beta1", "beta2"):
            value = getattr(self, key)
            need(value is None or 0 <= value < 1, key, "must be in [0, 1)")

    @classmethod
    def from_params(cls, params: dict[str, str]) -> "TrainConfig":
        """Rebuild a config from MLflow params (every value a string), keeping only TrainConfig keys."""
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        values = {}
        for key, text in params.items():
            if key not in types:
                continue
            if text == "None":
                values[key] = None
            elif "dict" in str(types[key]):
                values[key] = ast.literal_eval(text)  # MLflow logged the dict's repr
            elif "bool" in str(types[key]):
                values[key] = text == "True"
            elif "int" in str(types[key]):
                values[key] = int(float(text))
            elif "float" in str(types[key]):
                values[key] = float(text)
            else:
                values[key] = text
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _kinds(hint) -> tuple:
    """The plain types a field's annotation allows: Optional[float] is (float, NoneType)."""
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)


def type_matches(value, hint) -> bool:
    """JSON-like typing: ints are numbers but booleans are not; numpy scalars count as numbers."""
    def matches(kind) -> bool:
        if kind is type(None):
            return value is None
        if kind is bool:
            return isinstance(value, bool)
        if isinstance(value, bool):
            return False
        if kind is int:
            return isinstance(value, numbers.Integral)
        if kind is float:
            return isinstance(value, numbers.Real)
        return isinstance(value, kind)
    return any(matches(kind) for kind in _kinds(hint))


def type_name(hint) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return " or ".join(names.get(kind, getattr(kind, "__name__", str(kind))) for kind in _kinds(hint))
