import math

import pytest
import torch
from lion_pytorch import Lion as PerParameterLion
from lion_pytorch.foreach import Lion

from trainables.config import TrainConfig
from trainables.optim import build_optimizer, build_scheduler, lr_multiplier


def test_warmup_then_linear_decay():
    values = [lr_multiplier(s, total_steps=10, warmup_steps=2, kind="linear") for s in range(10)]
    assert values[:2] == [0.5, 1.0]
    assert values[2] == 1.0 and values[-1] == pytest.approx(1 / 8)
    assert all(a >= b for a, b in zip(values[1:], values[2:]))


def test_cosine_and_constant():
    assert lr_multiplier(5, 10, 0, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_multiplier(9, 10, 0, "constant") == 1.0


@pytest.mark.parametrize("name,cls", [("adamw", torch.optim.AdamW), ("lion", Lion)])
def test_optimizer_and_decay_groups(name, cls):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    cfg = TrainConfig(model="m", data_dir="d", optimizer=name, lr=1e-3, weight_decay=0.5)
    optimizer = build_optimizer(model, cfg)
    assert isinstance(optimizer, cls)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    scheduler = build_scheduler(optimizer, cfg, total_steps=10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * lr_multiplier(0, 10, 1, "linear"))
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-3)


def _train(optimizer_for, steps=5):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 1))
    optimizer = optimizer_for(model)
    data = torch.randn(32, 6)
    for _ in range(steps):
        model(data).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model, optimizer


@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_fast_kernels_update_like_the_reference(name):
    """Fused AdamW / foreach Lion must be the same optimiser as the per-parameter reference, and
    their state must load into it (checkpoints written by either stay resumable)."""
    from trainables.optim import parameter_groups
    cfg = TrainConfig(model="m", data_dir="d", optimizer=name, lr=1e-2, weight_decay=0.1)
    ours, our_optimizer = _train(lambda m: build_optimizer(m, cfg))
    if name == "adamw":
        assert our_optimizer.defaults["fused"] is True  # CPU parameters get the fused kernel
        reference = lambda m: torch.optim.AdamW(parameter_groups(m, 0.1), lr=1e-2, foreach=False)
    else:
        reference = lambda m: PerParameterLion(parameter_groups(m, 0.1), lr=1e-2, betas=(0.9, 0.99))
    theirs, their_optimizer = _train(reference)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    their_optimizer.load_state_dict(our_optimizer.state_dict())
    our_optimizer.load_state_dict(their_optimizer.state_dict())


def test_wsd_warms_up_holds_then_decays_over_the_last_fraction():
    values = [lr_multiplier(s, total_steps=10, warmup_steps=2, kind="wsd", decay_steps=4) for s in range(10)]
    assert values == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25])
    cfg = TrainConfig(model="m", data_dir="d", lr=1e-3, scheduler="wsd", warmup_ratio=0.2, wsd_decay_ratio=0.4)
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        model(torch.ones(1, 2)).sum().backward()
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([1e-3 * v for v in values])


def tiny_encoder(kind="bert", hidden=32, intermediate=64, layers=2, vocab=100, positions=64):
    import transformers
    size = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                intermediate_size=intermediate, num_labels=1, max_position_embeddings=positions)
    config = transformers.BertConfig(**size) if kind == "bert" else transformers.ModernBertConfig(
        **size, pad_token_id=0, cls_token_id=1, sep_token_id=2, bos_token_id=1, eos_token_id=2,
        global_attn_every_n_layers=2, local_attention=64)
    torch.manual_seed(0)
    return transformers.AutoModelForSequenceClassification.from_config(config)


def config_for(name, **overrides):
    return TrainConfig(model="m", data_dir="d", optimizer=name, lr=1e-3, weight_decay=0.1,
                       aux_lr=1e-4 if name == "muon" else None,
                       scheduler="constant" if name == "adamw_schedulefree" else "linear", **overrides)


def train_steps(model, optimizer, steps=3):
    from trainables.optim import training_weights
    training_weights(optimizer)
    inputs = torch.randint(3, model.config.vocab_size, (4, 12))
    for _ in range(steps):
        model(input_ids=inputs).logits.pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("kind", ["bert", "modernbert"])
def test_muon_takes_the_encoder_blocks_matrices_and_adamw_the_rest(kind):
    from trainables.optim import Chained
    model = tiny_encoder(kind)
    optimizer = build_optimizer(model, config_for("muon"))
    assert isinstance(optimizer, Chained)
    muon, adamw = optimizer.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    adamw_names = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert muon_names | adamw_names == set(names.values()) and not muon_names & adamw_names
    layers = ".encoder.layer." if kind == "bert" else ".layers."
    assert muon_names and all(layers in n and n.endswith(".weight") for n in muon_names)
    assert not any("embeddings" in n or "classifier" in n or "pooler" in n or n.startswith("head.")
                   for n in muon_names)
    assert {n for n in adamw_names if "embeddings" in n} and {n for n in adamw_names if "classifier" in n}
    decay, no_decay = adamw.param_groups
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0 and muon.param_groups[0]["weight_decay"] == 0.1
    assert muon.param_groups[0]["lr"] == 1e-3 and decay["lr"] == 1e-4  # lr: Muon's units; aux_lr: AdamW's


def test_chained_state_round_trips_and_the_schedule_drives_both_members(tmp_path):
    cfg = config_for("muon", warmup_ratio=0.0)
    model = tiny_encoder()
    optimizer = build_optimizer(model, cfg)
    train_steps(model, optimizer)
    torch.save(optimizer.state_dict(), tmp_path / "state.pt")
    restored = build_optimizer(model, cfg)
    scheduler = build_scheduler(restored, cfg, total_steps=4)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    for ours, theirs in zip(restored.optimizers, optimizer.optimizers):
        assert ours.state_dict()["state"].keys() == theirs.state_dict()["state"].keys()
    train_steps(model, restored, steps=1)
    scheduler.step()  # linear decay over 4 steps, after 1: 3/4 of each member's peak
    assert restored.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.75e-3)
    assert restored.optimizers[1].param_groups[0]["lr"] == pytest.approx(0.75e-4)


def test_schedule_free_evaluates_at_its_average_and_steps_only_in_train_mode():
    import schedulefree

    from trainables.optim import evaluation_weights
    model = tiny_encoder()
    optimizer = build_optimizer(model, config_for("adamw_schedulefree"))
    assert isinstance(optimizer, schedulefree.AdamWScheduleFree)
    train_steps(model, optimizer)
    y = [p.detach().clone() for p in model.parameters()]
    with evaluation_weights(optimizer):
        assert not optimizer.param_groups[0]["train_mode"]
        x = [p.detach().clone() for p in model.parameters()]
        with pytest.raises(Exception, match="train mode"):
            optimizer.step()
    assert optimizer.param_groups[0]["train_mode"]
    assert any(not torch.equal(a, b) for a, b in zip(x, y))  # the averaged point is another point
    for a, b in zip(model.parameters(), y):
        torch.testing.assert_close(a, b)
    train_steps(model, optimizer, steps=1)  # back in train mode: it steps


def test_evaluation_weights_leaves_other_optimizers_alone():
    from trainables.optim import evaluation_weights
    model = tiny_encoder()
    optimizer = build_optimizer(model, config_for("adamw"))
    before = [p.detach().clone() for p in model.parameters()]
    with evaluation_weights(optimizer):
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


@pytest.mark.parametrize("name,expected", [
    ("apollo", "AdamW"), ("apollo_mini", "AdamW"), ("adamw_schedulefree", "AdamWScheduleFree"),
    ("muon", "Chained"), ("lion", "Lion"), ("adamw", "AdamW")])
def test_every_optimizer_trains_and_leaves_1d_parameters_undecayed(name, expected):
    model = tiny_encoder()
    optimizer = build_optimizer(model, config_for(name))
    assert type(optimizer).__name__ == expected
    from trainables.optim import members
    for member in members(optimizer):
        for group in member.param_groups:
            if any(p.ndim == 1 for p in group["params"]):
                assert group["weight_decay"] == 0.0 and all(p.ndim == 1 for p in group["params"])
    before = [p.detach().clone() for p in model.parameters()]
    train_steps(model, optimizer)
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), before))


def test_apollo_state_is_far_below_adamw_on_the_same_model():
    from trainables.optim import state_bytes
    sizes = {}
    for name in ("adamw", "lion", "apollo", "apollo_mini"):
        model = tiny_encoder(hidden=512, intermediate=2048, layers=1, vocab=8, positions=16)  # blocks dominate
        optimizer = build_optimizer(model, config_for(name))
        train_steps(model, optimizer, steps=1)
        sizes[name] = state_bytes(optimizer)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert param_bytes * 2 <= sizes["adamw"] < param_bytes * 2.01  # two moments (+ step counters)
    assert param_bytes <= sizes["lion"] < param_bytes * 1.01  # one moment
    assert sizes["apollo"] < 0.75 * sizes["adamw"]  # rank-256 moments + projection of 512-wide matrices
    # rank 1: what is left is AdamW's state of the pooler, embeddings and head
    assert sizes["apollo_mini"] < 0.1 * sizes["adamw"]


def test_apollo_checkpoint_state_loads_weights_only(tmp_path):
    from trainables.checkpoint import MODEL_DIR, STATE_FILE, load_state
    from trainables.optim import load_optimizer_state, state_bytes
    cfg = config_for("apollo_mini")
    model = tiny_encoder()
    optimizer = build_optimizer(model, cfg)
    train_steps(model, optimizer)
    (tmp_path / MODEL_DIR).mkdir()
    (tmp_path / MODEL_DIR / "config.json").write_text("{}")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": {}, "step": 3, "epoch": 0}, tmp_path / STATE_FILE)
    restored = build_optimizer(model, cfg)
    load_optimizer_state(restored, load_state(tmp_path)["optimizer"])  # its projectors are objects
    assert state_bytes(restored) == state_bytes(optimizer)
    train_steps(model, restored, steps=1)
