"""Checkpoints (each epoch end, and every eval_every steps): `model/` (save_pretrained:
safetensors + tokenizer) and `state.pt`.

`model/` loads as it is with transformers or sentence-transformers' CrossEncoder, truncating at the
training max_length (trainables/model_card.py). `state.pt`
holds the optimiser, scheduler, step, epoch and epoch_step (trainables/reporting.py), every rank's RNG states (CPU and CUDA) and the epoch's
reported metrics; it is read with weights_only=True (plus APOLLO's projector class, plain data)
so a checkpoint can never run code.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from trainables.errors import UsageError
from trainables.model_card import record_max_length

STATE_FILE = "state.pt"
TEST_PER_QUERY = "test_per_query.json"  # seed reruns only: the final epoch's per-query test scores
MODEL_DIR = "model"
# The one class a checkpoint may hold beyond tensors and plain values: APOLLO keeps its random
# projection (a seed and a matrix) as an object in the optimiser state.
APOLLO_PROJECTOR = "apollo_torch.random_projector.GradientProjector"


def save_checkpoint(directory, model, tokenizer, state: dict, max_length: int | None = None) -> Path:
    """Write a complete checkpoint into `directory`: the model and `state` (optimizer, scheduler,
    step, epoch, rng_states, metrics), via a temporary sibling renamed at the end, so a crash
    mid-write never leaves a directory that looks complete. max_length: the training length, kept in
    the tokenizer config so CrossEncoder(model/) truncates the same (trainables/model_card.py)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp / MODEL_DIR, safe_serialization=True)
    tokenizer.save_pretrained(tmp / MODEL_DIR)
    if max_length is not None:
        record_max_length(tmp / MODEL_DIR, max_length)
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def load_state(directory) -> dict:
    path = Path(directory) / STATE_FILE
    if not path.is_file() or not (Path(directory) / MODEL_DIR / "config.json").is_file():
        raise UsageError(f"{directory}: not a checkpoint (needs {MODEL_DIR}/ and {STATE_FILE})")
    try:
        with torch.serialization.safe_globals(allowed_classes(path)):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UsageError(f"{path}: corrupt checkpoint state ({type(err).__name__})") from None
    missing = {"optimizer", "scheduler", "step", "epoch"} - set(state)
    if missing:
        raise UsageError(f"{path}: checkpoint state lacks {', '.join(sorted(missing))}")
    return state


def allowed_classes(path) -> list:
    """APOLLO's projector class when the file holds one (imported only then: apollo-torch is slow to import)."""
    if APOLLO_PROJECTOR not in torch.serialization.get_unsafe_globals_in_checkpoint(path):
        return []
    from apollo_torch.random_projector import GradientProjector
    return [GradientProjector]
