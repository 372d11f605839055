"""What makes a saved `model/` folder a usable artifact: the training max_length in its tokenizer
config (every checkpoint), and a Hugging Face model card (README.md, the best model only).

sentence-transformers' CrossEncoder and transformers' AutoTokenizer both read the length from
tokenizer_config.json's `model_max_length`, so the model truncates as it was trained to.
"""
from __future__ import annotations

import json
from pathlib import Path

from trainables.errors import UsageError

TOKENIZER_CONFIG = "tokenizer_config.json"
CARD = "README.md"
TAGS = ["sentence-transformers", "cross-encoder", "reranker", "text-ranking", "transformers"]
# TrainConfig keys that are places on the training machine, not hyperparameters.
LOCAL_KEYS = ("data_dir", "prepared", "run_file", "eval_runs", "model")


def record_max_length(model_dir, max_length: int) -> None:
    """Set model_max_length in the saved tokenizer config (save_pretrained keeps the base model's)."""
    path = Path(model_dir) / TOKENIZER_CONFIG
    if not path.is_file():
        raise UsageError(f"{model_dir}: no {TOKENIZER_CONFIG}, so its max_length cannot be recorded")
    config = json.loads(path.read_text(encoding="utf-8"))
    config["model_max_length"] = int(max_length)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def hub_id(model: str) -> str | None:
    """The base model as a Hub id (owner/name), or None for a local folder (no Hub link to make)."""
    if model.startswith("packaged:"):  # the packaged copy of sentence-transformers' own model
        return f"sentence-transformers/{model.split(':', 1)[1]}"
    if model.count("/") == 1 and not model.startswith((".", "/", "~")) and not Path(model).exists():
        return model
    return None


def front_matter(config: dict) -> dict:
    meta = {"library_name": "sentence-transformers", "pipeline_tag": "text-ranking", "tags": TAGS}
    base = hub_id(str(config.get("model", "")))
    if base:
        meta["base_model"] = base
    return meta


def metric_rows(title: str, metrics: dict) -> list[str]:
    return [f"| {title} | {name} | {value:.4f} |" for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


def card_text(config: dict, dev: dict, test: dict, trial_id: str) -> str:
    """The card: YAML front matter, then how to load it, the data, the metrics and the TrainConfig."""
    import yaml
    data = (f"Trained on `{Path(str(config.get('data_dir', '?'))).name}` ({config.get('training_data', 'auto')} "
            f"training pairs), model selected on dev nDCG@10 ("
            f"{'eval set ' + config['dev_set'] if config.get('dev_set') else 'held-out judged queries'}).")
    rows = metric_rows("dev", dev) + [r for name, result in test.items()
                                      for r in metric_rows(f"test: {name}", result.get("metrics", {}))]
    params = [f"| {k} | {v} |" for k, v in config.items() if k not in LOCAL_KEYS and v is not None]
    return "\n".join([
        "---", yaml.safe_dump(front_matter(config), sort_keys=False).strip(), "---", "",
        f"# Cross-encoder reranker (trial {trial_id})", "",
        f"Base model: `{config.get('model', '?')}`. Scores a (query, passage) pair with one logit; higher "
        f"is more relevant. Inputs are truncated to {config.get('max_length')} tokens, as in training.", "",
        "```python", "from sentence_transformers import CrossEncoder", "import torch",
        "model = CrossEncoder(path)  # sigmoid by default; raw logits as trained:",
        "scores = model.predict([(query, passage)], activation_fn=torch.nn.Identity())", "```", "",
        "## Training data", "", data, "",
        "## Metrics", "", "| split | metric | value |", "|---|---|---|", *rows, "",
        "## Hyperparameters (TrainConfig)", "", "| key | value |", "|---|---|", *params, ""])


def write_card(model_dir, config: dict, dev: dict, test: dict, trial_id: str) -> Path:
    path = Path(model_dir) / CARD
    path.write_text(card_text(config, dev, test, trial_id), encoding="utf-8")
    return path
