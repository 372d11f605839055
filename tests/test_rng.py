"""Per-rank dropout streams and their exact restore from a checkpoint's state."""
import torch

from trainables.rng import gather_rng_states, rank_seed, restore_rng, seed_rank

CPU = torch.device("cpu")


def dropout_mask():
    return torch.nn.functional.dropout(torch.ones(64), p=0.5)


def test_every_seed_and_rank_gets_its_own_stream():
    seeds = {rank_seed(seed, rank) for seed in range(5) for rank in range(8)}
    assert len(seeds) == 40
    masks = []
    for rank in range(3):
        seed_rank(0, rank)
        masks.append(dropout_mask())
    assert not masks[0].equal(masks[1]) and not masks[1].equal(masks[2])
    seed_rank(0, 1)
    assert dropout_mask().equal(masks[1])  # and each stream is reproducible


def test_saved_streams_continue_exactly_after_restore():
    seed_rank(3, 0)
    dropout_mask()
    state = {"rng_states": gather_rng_states(CPU, world_size=1)}
    expected = dropout_mask()
    seed_rank(99, 0)
    assert restore_rng(state, rank=0, world_size=1, device=CPU)
    assert dropout_mask().equal(expected)


def test_no_restore_for_another_world_size_or_an_older_checkpoint():
    state = {"rng_states": gather_rng_states(CPU, world_size=1)}
    assert not restore_rng(state, rank=1, world_size=2, device=CPU)
    assert not restore_rng({"torch_rng": torch.get_rng_state()}, rank=0, world_size=1, device=CPU)
