"""Tiny randomly initialised BERT / GTE / ModernBERT rerankers for smoke tests and unit tests.

They share the packaged MiniLM's WordPiece tokenizer (so they need no download) and are small
enough to train in seconds on a CPU. Each is built once per directory and reused.
"""
from __future__ import annotations

from pathlib import Path

from trainables.models import packaged_minilm_dir

KINDS = ("bert", "gte", "modernbert")
_SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def tiny_config(kind: str, tokenizer):
    import transformers
    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_labels=1,
                  max_position_embeddings=512, **_SIZE)
    if kind == "bert":
        return transformers.BertConfig(**common)
    if kind == "gte":
        return transformers.GteConfig(**common, type_vocab_size=2)
    if kind == "modernbert":
        # ModernBERT needs the tokenizer's own special ids; its defaults belong to another vocabulary.
        return transformers.ModernBertConfig(
            **common, cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
            global_attn_every_n_layers=2, local_attention=64)
    raise ValueError(f"unknown tiny model kind {kind!r}; one of {KINDS}")


def build_tiny_model(kind: str, out_dir, seed: int = 0) -> Path:
    """Write a tiny random `kind` reranker (config, safetensors, tokenizer) to out_dir, once."""
    import torch
    import transformers
    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return out_dir
    tokenizer = transformers.AutoTokenizer.from_pretrained(packaged_minilm_dir())
    torch.manual_seed(seed)
    model = transformers.AutoModelForSequenceClassification.from_config(tiny_config(kind, tokenizer))
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(out_dir)
    return out_dir
