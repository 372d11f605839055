"""Speed and dev quality of the changes profile_step.py suggests, over a whole training run.

    .venv/bin/python benchmarks/train_variants.py [--lr 2e-5] [--epochs 2] [--variants fp32-loop,fused+bf16]

Trains the embedded minilm run (704 pairs, 2 epochs, our batches, encode, loss, clipping and
schedule) in this process without Ray, once per variant, and scores the dev rerank with
trainables.evaluate as the loop does. pairs/s counts training only. A speed-up is worth taking
only if dev nDCG@10 stays where it was: that is what this script checks.
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from common import (RESULTS, chosen_variants, cpu_trial_setup, embedded_config, machine, measured, print_table,
                    write_json)

VARIANTS = {
    "fp32-loop": dict(what="fp32, torch's per-parameter AdamW loop (the loop without fused AdamW and bf16)"),
    "fused-adamw": dict(fused=True, what="AdamW(fused=True)"),
    "cpu-bf16": dict(bf16=True, what="bf16 autocast on the CPU (train and dev scoring)"),
    "fused+bf16": dict(fused=True, bf16=True, what="both: what trainables do now on a bf16-capable CPU"),
    "fused+batch32": dict(fused=True, batch_size=32, what="fused AdamW, batch 32 (half the steps)"),
    "frozen-word-emb": dict(freeze_word_embeddings=True, what="word embeddings frozen"),
}


def train_variant(name: str, lr: float, epochs: int, threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    from trainables.config import TrainConfig
    from trainables.data import steps_per_epoch, worker_batches
    from trainables.evaluate import candidates, mean_metrics, per_query_metrics, rerank_scores, to_run
    from common import encode_pairs, id_pair_lengths
    from trainables.optim import build_scheduler, parameter_groups

    v = VARIANTS[name]
    cfg = TrainConfig.from_dict(embedded_config(batch_size=v.get("batch_size", 16), epochs=epochs, lr=lr,
                                                num_threads=threads))
    device = torch.device("cpu")
    data, pairs, dev_qids, tokenizer, model = cpu_trial_setup(cfg)
    if v.get("freeze_word_embeddings"):
        model.get_input_embeddings().weight.requires_grad_(False)
    # Built here, not by trainables.optim, so each variant says which kernel it uses.
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr,
                                  **({"fused": True} if v.get("fused") else {"foreach": False}))
    scheduler = build_scheduler(optimizer, cfg, total_steps=steps_per_epoch(len(pairs), cfg.batch_size) * cfg.epochs)
    dtype = torch.bfloat16 if v.get("bf16") else None
    autocast = torch.autocast("cpu", dtype=dtype) if dtype else nullcontext()
    lengths = id_pair_lengths(pairs, data) if cfg.group_by_length else None
    train_s, trained, loss_sum, steps = 0.0, 0, 0.0, 0
    for epoch in range(cfg.epochs):
        model.train()
        started = time.perf_counter()
        for (micro,) in worker_batches(len(pairs), epoch, cfg.seed, cfg.batch_size, 1, 0, 1, lengths):
            inputs, labels = encode_pairs([pairs[i] for i in micro], data, tokenizer, cfg.max_length, device)
            with autocast:
                logits = model(**inputs).logits.view(-1).float()
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum, trained, steps = loss_sum + loss.item(), trained + len(micro), steps + 1
        train_s += time.perf_counter() - started
    dev_pairs = candidates(data.run, dev_qids, cfg.rerank_depth)
    scores = rerank_scores(model, tokenizer, dev_pairs, data.queries, data.collection, cfg.max_length,
                           cfg.eval_batch_size, device, dtype)
    metrics = mean_metrics(per_query_metrics(to_run(dev_pairs, scores), data.qrels, cfg.positive_level))
    return {"pairs": trained, "steps": steps, "train_s": train_s, "pairs_per_s": trained / train_s,
            "mean_train_loss": loss_sum / steps, **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, default=2e-5, help="peak lr, all variants (TrainConfig's default)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"from {', '.join(VARIANTS)}")
    parser.add_argument("--out", type=Path, default=RESULTS / "train_variants.json")
    args = parser.parse_args()
    names = chosen_variants(args.variants, VARIANTS)
    runs = {}
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        runs[name] = measured(lambda: train_variant(name, args.lr, args.epochs, args.threads))
    base = runs[names[0]]["pairs_per_s"]
    print_table(f"train_variants: packaged MiniLM, embedded data, {args.epochs} epochs, lr {args.lr:g}, "
                f"{args.threads} threads, no Ray", [
        (name, f"{r['pairs_per_s']:6.1f} pairs/s ({r['pairs_per_s'] / base:4.2f}x)  dev nDCG@10 {r['ndcg_at_10']:.4f}  "
               f"MRR@10 {r['mrr_at_10']:.4f}  loss {r['mean_train_loss']:.4f}  other {r['other_cores']:.2f} cores  "
               f"{VARIANTS[name]['what']}") for name, r in runs.items()])
    write_json(args.out, {"benchmark": "train_variants", "machine": machine(), "lr": args.lr, "epochs": args.epochs,
                          "figures": {name: {k: r[k] for k in ("pairs_per_s", "ndcg_at_10", "mrr_at_10")}
                                      for name, r in runs.items()}, "runs": runs})


if __name__ == "__main__":
    main()
