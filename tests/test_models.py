import json

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
