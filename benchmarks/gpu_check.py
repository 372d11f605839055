"""Single-GPU check: each backbone trains through our loop at bf16 and we print what it reports.

    .venv/bin/python benchmarks/gpu_check.py [--backbones minilm,minilm-l12,gte,modernbert]
        [--steps 30] [--batch-size 64] [--max-length 256] [--data DIR] [--out PATH]
    .venv/bin/python benchmarks/gpu_check.py --allow-cpu --steps 3    # CPU smoke run, tiny models

Each backbone is one Ray Train TorchTrainer run (1 worker, use_gpu) of trainables.loop for two
epochs of `steps` optimiser steps at `batch-size` pairs: epoch 1 includes CUDA warm-up, epoch 2 is
the steady state. Models: the real checkpoint when it is in the local HF cache; otherwise minilm is
the packaged all-MiniLM-L6-v2 (real weights) and minilm-l12 / gte / modernbert are random-init
models with the real base sizes (MiniLM-L12-H384, GTE-multilingual-base, ModernBERT-base) and the
packaged WordPiece tokenizer, which is what speed and memory depend on. The default data repeats
each embedded passage until every pair fills max-length tokens, so a step is batch × max-length
tokens; --data DIR trains on a real data dir instead. Exits 2 with one line when no GPU is visible.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import EMBEDDED, RESULTS, machine, start_local_ray, write_json

BACKBONES = ("minilm", "minilm-l12", "gte", "modernbert")
SPACE_OF = {"minilm": "minilm", "minilm-l12": "minilm", "gte": "gte", "modernbert": "modernbert"}
TINY_KIND = {"minilm": "bert", "minilm-l12": "bert", "gte": "gte", "modernbert": "modernbert"}
SHOWN = ("pairs_per_s", "tokens_per_s", "step_time_s", "gpu_util_mean", "gpu_mem_peak_gb", "mfu")


def base_size_config(backbone: str, tokenizer):
    """The real backbone's sizes with the packaged tokenizer's special ids (as trainables.tiny does)."""
    import transformers
    ids = dict(pad_token_id=tokenizer.pad_token_id, num_labels=1)
    if backbone == "minilm-l12":  # microsoft/MiniLM-L12-H384-uncased
        return transformers.BertConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                                       intermediate_size=1536, vocab_size=30522, **ids)
    if backbone == "gte":  # Alibaba-NLP/gte-multilingual-base; BERT tokenizers emit token type 1
        return transformers.GteConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                      intermediate_size=3072, vocab_size=250048, type_vocab_size=2, **ids)
    if backbone == "modernbert":  # the defaults are ModernBERT-base
        return transformers.ModernBertConfig(cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                                             bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                                             **ids)
    raise ValueError(backbone)


def resolve_model(backbone: str, tiny: bool, work: Path) -> tuple[str, str]:
    """(model dir or id, what it is)."""
    import torch
    import transformers

    from spaces import get_space
    from trainables.models import PACKAGED_MINILM, locate, packaged_minilm_dir
    from trainables.tiny import build_tiny_model
    if tiny:
        return str(build_tiny_model(TINY_KIND[backbone], work / f"tiny-{backbone}")), "tiny random (CPU smoke run)"
    space = get_space(SPACE_OF[backbone])
    if backbone != "minilm-l12" and locate(space.model) is not None:
        return space.model, f"{space.model} (HF cache)"
    if backbone == "minilm":
        return PACKAGED_MINILM, "packaged all-MiniLM-L6-v2 (real weights)"
    out = work / f"random-{backbone}"
    if not (out / "config.json").is_file():
        tokenizer = transformers.AutoTokenizer.from_pretrained(packaged_minilm_dir())
        torch.manual_seed(0)
        # Initialising on the GPU takes seconds; ModernBERT's init alone takes about a minute on two CPU cores.
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = transformers.AutoModelForSequenceClassification.from_config(base_size_config(backbone, tokenizer))
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return str(out), f"random init, {backbone} base sizes"


def long_pairs_data(out: Path, max_length: int) -> Path:
    """The embedded data with each passage repeated to about max_length tokens (5 characters per
    token is generous for this English), so truncation makes every pair max_length tokens long."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("queries.tsv", "qrels.txt", "run.bm25.trec"):
        (out / name).write_text((EMBEDDED / name).read_text())
    lines = []
    for line in (EMBEDDED / "collection.tsv").read_text().splitlines():
        pid, text = line.split("\t")
        lines.append(f"{pid}\t{' '.join([text] * math.ceil(max_length * 5 / len(text)))}\n")
    (out / "collection.tsv").write_text("".join(lines))
    return out


def pair_budget(config: dict, want: int) -> dict:
    """negatives_per_query and max_train_queries that give at least `want` training pairs, and few more."""
    from trainables.config import TrainConfig
    from trainables.data import RetrievalData, split_queries, training_pairs
    cfg = TrainConfig.from_dict(config)
    data = RetrievalData.load(cfg.data_dir, cfg.run_file)
    train_qids, _ = split_queries(data, cfg.dev_fraction, cfg.split_seed, cfg.folds, cfg.test_fold)

    def count(negatives: int, queries: int) -> int:
        return len(training_pairs(data, train_qids[:queries], negatives, cfg.negative_depth, cfg.positive_level,
                                  cfg.graded_labels, cfg.seed))

    negatives = next((n for n in range(1, cfg.negative_depth) if count(n, len(train_qids)) >= want), None)
    if negatives is None:
        raise SystemExit(f"gpu_check: {cfg.data_dir} has too few training pairs for {want} per epoch")
    queries = next(q for q in range(1, len(train_qids) + 1) if count(negatives, q) >= want)
    return {"negatives_per_query": negatives, "max_train_queries": queries}


def train(backbone: str, config: dict, use_gpu: bool, storage: Path) -> list[dict]:
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from trainables.loop import train_loop_per_worker
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=1, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": config["num_threads"], **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(name=f"gpu-check-{backbone}", storage_path=str(storage),
                             checkpoint_config=CheckpointConfig(num_to_keep=None)))
    result = trainer.fit()
    if result.error:
        raise RuntimeError(f"{backbone}: {result.error}")
    return sorted((metrics for _, metrics in result.best_checkpoints), key=lambda m: m["epoch"])


def fmt(value, spec: str) -> str:
    width = int(spec.split(".")[0])
    return format(value, spec) if isinstance(value, (int, float)) else "-".rjust(width)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default=",".join(BACKBONES), help=f"comma-separated: {', '.join(BACKBONES)}")
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per epoch (2 epochs)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--data", type=Path, default=None, help="a data dir (default: embedded, passages lengthened)")
    parser.add_argument("--allow-cpu", action="store_true", help="without a GPU: tiny models on the CPU (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    args = parser.parse_args()
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    unknown = sorted(set(backbones) - set(BACKBONES))
    if unknown or not backbones:
        print(f"gpu_check: unknown backbone(s) {', '.join(unknown) or '(none given)'}; choose from "
              f"{', '.join(BACKBONES)}", file=sys.stderr)
        return 2

    import torch
    use_gpu = torch.cuda.is_available()
    if not use_gpu and not args.allow_cpu:
        print(f"gpu_check: no CUDA GPU visible (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}); run on a GPU machine, or pass --allow-cpu for a CPU smoke run",
              file=sys.stderr)
        return 2

    import os
    threads = max(1, min(8, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2) - 1))
    started = time.perf_counter()
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-check-") as tmp:
        work = Path(tmp)
        data_dir = args.data.resolve() if args.data else long_pairs_data(work / "long-embedded", args.max_length)
        base = {"data_dir": str(data_dir), "max_length": args.max_length, "batch_size": args.batch_size,
                "epochs": 2, "bf16": True, "group_by_length": True, "optimizer": "adamw", "lr": 2e-5,
                "scheduler": "linear", "warmup_ratio": 0.1, "training_data": "judged",
                "max_dev_queries": 8, "rerank_depth": 20, "eval_batch_size": 128, "num_threads": threads}
        # Pair counts do not depend on the model, so the budget is found once.
        base.update(pair_budget({**base, "model": "unused"}, args.steps * args.batch_size))
        start_local_ray()
        import ray
        try:
            for backbone in backbones:
                model, what = resolve_model(backbone, tiny=not use_gpu, work=work)
                print(f"{backbone}: {what}", file=sys.stderr, flush=True)
                began = time.perf_counter()
                epochs = train(backbone, {**base, "model": model}, use_gpu, work / "runs")
                results[backbone] = {"model": what, "wall_s": time.perf_counter() - began, "epochs": epochs}
                shutil.rmtree(work / "runs", ignore_errors=True)  # base-size checkpoints are GBs each
                for m in epochs:
                    rows.append(f"{backbone:<11} {m['epoch']:>2} {m['step']:>5} {fmt(m['pairs_per_s'], '9.1f')} "
                                f"{fmt(m['tokens_per_s'], '10.0f')} {fmt(m['step_time_s'], '8.3f')} "
                                f"{fmt(m.get('gpu_util_mean'), '7.1f')} {fmt(m.get('gpu_mem_peak_gb'), '8.2f')} "
                                f"{fmt(m.get('mfu'), '6.3f')}  {what}")
        finally:
            ray.shutdown()

    gpu = torch.cuda.get_device_name(0) if use_gpu else "none (CPU smoke run, tiny models)"
    header = (f"{'backbone':<11} {'ep':>2} {'step':>5} {'pairs/s':>9} {'tokens/s':>10} {'step_s':>8} "
              f"{'util%':>7} {'mem_GB':>8} {'mfu':>6}  model")
    print(f"\ngpu_check on {gpu}: bf16, batch {args.batch_size}, max_length {args.max_length}, "
          f"{base['negatives_per_query']} negatives/query × {base['max_train_queries']} queries "
          f"({args.steps}+ steps per epoch); epoch 1 includes warm-up\n{header}\n{'-' * len(header)}")
    print("\n".join(rows))
    print(f"total {time.perf_counter() - started:.0f} s")
    write_json(args.out, {"benchmark": "gpu_check", "machine": machine(), "config": base,
                          "figures": {b: {k: r["epochs"][-1].get(k) for k in SHOWN} for b, r in results.items()},
                          "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
