"""When a trial reports (every eval_every optimiser steps and at each epoch end), how far it has
got, and where a trial resumed from a checkpoint continues: pure step arithmetic the loop and the
driver share, so ASHA's budget in steps is the loop's own count.
"""
from __future__ import annotations

from trainables.data import steps_per_epoch
from trainables.errors import UsageError


def total_steps(num_pairs: int, batch_size: int, epochs: int) -> int:
    """Optimiser steps of a whole trial: ASHA's max_t when it counts in steps."""
    return steps_per_epoch(num_pairs, batch_size) * epochs


def report_due(step: int, steps_each_epoch: int, eval_every: int | None) -> bool:
    """After optimiser step `step` (1-based, counted over the whole trial): at every epoch end, and
    every eval_every steps; a step that is both reports once."""
    return step % steps_each_epoch == 0 or bool(eval_every) and step % eval_every == 0


def epochs_done(step: int, steps_each_epoch: int) -> int | float:
    """Epochs trained so far, fractional mid-epoch; whole epochs stay ints, so a trial without
    eval_every reports exactly the epoch numbers it always did."""
    whole, rest = divmod(step, steps_each_epoch)
    return whole if rest == 0 else step / steps_each_epoch


def saved_position(step: int, steps_each_epoch: int) -> dict:
    """What a checkpoint after `step` records besides the step: the epoch it belongs to (0-based)
    and the steps of that epoch done (steps_each_epoch at its end)."""
    epoch = (step - 1) // steps_each_epoch
    return {"epoch": epoch, "epoch_step": step - epoch * steps_each_epoch}


def resume_point(state: dict, steps_each_epoch: int) -> tuple[int, int]:
    """(epoch to continue, its optimiser steps already done, to skip) for a checkpoint's state.
    Checkpoints from before eval_every hold epoch ends only (no epoch_step)."""
    epoch_step = state.get("epoch_step", steps_each_epoch)
    if state["epoch"] * steps_each_epoch + epoch_step != state["step"]:
        # Skipping the wrong batches would repeat or drop pairs: the training pairs have changed.
        raise UsageError(f"checkpoint at step {state['step']} (epoch {state['epoch']}, step {epoch_step} in it) "
                         f"does not fit {steps_each_epoch} steps per epoch: were the training pairs changed?")
    return divmod(state["step"], steps_each_epoch)
