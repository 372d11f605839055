import json
from pathlib import Path

import pytest
import torch

from trainables.errors import UsageError
from trainables.models import PACKAGED_MINILM, gte_native_config, load_reranker, native_dir, require
from trainables.tiny import KINDS, build_tiny_model


def test_gte_remote_code_config_is_rewritten(tmp_path):
    original = {"model_type": "new", "auto_map": {"AutoModel": "Alibaba-NLP/new-impl--modeling.NewModel"},
                "architectures": ["NewForTokenClassification"], "vocab_size": 100, "hidden_size": 32,
                "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "rope_theta": 160000,
                "pack_qkv": True, "unpad_inputs": True, "position_embedding_type": "rope"}
    config = gte_native_config(original)
    assert config["model_type"] == "gte" and "auto_map" not in config and "pack_qkv" not in config
    assert config["rope_parameters"]["rope_theta"] == 160000.0
    source = tmp_path / "gte-original"
    source.mkdir()
    (source / "config.json").write_text(json.dumps(original))
    (source / "modeling.py").write_text("raise RuntimeError('remote code must never run')")
    shadow = native_dir(source, tmp_path / "cache")
    assert json.loads((shadow / "config.json").read_text())["model_type"] == "gte"
    assert not (shadow / "modeling.py").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_models_load_as_one_logit_rerankers(tmp_path, kind):
    tokenizer, model = load_reranker(build_tiny_model(kind, tmp_path / kind))
    batch = tokenizer(["a query"], ["a passage about it"], return_tensors="pt")
    assert model(**batch).logits.shape == torch.Size([1, 1])


def test_packaged_minilm_is_found_offline():
    assert (require(PACKAGED_MINILM) / "model.safetensors").is_file()


def test_unavailable_model_is_a_usage_error():
    with pytest.raises(UsageError, match="not available offline"):
        require("nobody/no-such-model-here")


def test_an_fp16_checkpoint_trains_with_fp32_master_weights(tmp_path):
    # GTE-multilingual-base ships fp16 weights; a 1e-6 Lion step would round away in fp16.
    from trainables.config import TrainConfig
    from trainables.optim import build_optimizer
    tokenizer, model = load_reranker(build_tiny_model("gte", tmp_path / "gte"))
    model.half().save_pretrained(tmp_path / "gte-fp16")
    tokenizer.save_pretrained(tmp_path / "gte-fp16")
    assert json.loads((tmp_path / "gte-fp16" / "config.json").read_text())["dtype"] == "float16"
    tokenizer, model = load_reranker(tmp_path / "gte-fp16")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = build_optimizer(model, TrainConfig(model="m", data_dir="d", optimizer="lion", lr=1e-6,
                                                   weight_decay=0.0))
    model(**tokenizer(["q"], ["a passage"], return_tensors="pt")).logits.sum().backward()
    optimizer.step()
    name = next(n for n, p in model.named_parameters() if p.ndim == 2 and "layers.0" in n)
    changed = (model.get_parameter(name) - before[name]).abs()
    assert changed.max().item() == pytest.approx(1e-6, rel=0.01)  # Lion moves each weight by lr·sign
    # The same step on fp16 weights would leave most of them where they were (84% here).
    as_fp16 = before[name].half()
    assert ((as_fp16 + torch.tensor(1e-6).half()) == as_fp16).float().mean() > 0.75


def prepare_shadow(args):
    source, cache, barrier = args
    barrier.wait()  # every process starts writing the same shadow folder at the same moment
    shadow = native_dir(source, cache)
    return str(shadow), json.loads((shadow / "config.json").read_text())["model_type"]


def test_many_processes_prepare_one_gte_folder_at_once(tmp_path):
    import multiprocessing
    source = tmp_path / "gte-original"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model_type": "new", "hidden_size": 32}))
    for name in ("model.safetensors", "tokenizer.json", "vocab.txt"):
        (source / name).write_text(name)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(6) as pool:
        barrier = manager.Barrier(6)
        results = pool.map(prepare_shadow, [(source, tmp_path / "cache", barrier)] * 6)
    assert len({path for path, _ in results}) == 1 and {kind for _, kind in results} == {"gte"}
    shadow = Path(results[0][0])
    assert sorted(p.name for p in shadow.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                        "vocab.txt"]
    assert (shadow / "vocab.txt").read_text() == "vocab.txt"
    assert [p.name for p in shadow.parent.iterdir()] == [shadow.name]  # no temporary folder left behind
    other = tmp_path / "elsewhere" / "gte-original"  # same name, other model: its own folder
    other.mkdir(parents=True)
    (other / "config.json").write_text(json.dumps({"model_type": "new", "hidden_size": 64}))
    assert native_dir(other, tmp_path / "cache") != shadow
