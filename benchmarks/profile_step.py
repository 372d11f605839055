"""Where a training step of ours spends its time on the CPU, and what changes would buy.

    .venv/bin/python benchmarks/profile_step.py [--steps 30] [--rounds 2] [--variants ours,fp32-loop]

Runs trainables.loop's step (same pairs, batches, encode, loss, clipping, optimizer and schedule)
in this process, without Ray, and times each phase: tokenize (encode), forward, backward, clip,
optimizer (step + scheduler + zero_grad). `ours` is the embedded minilm setting (batch 16,
no length grouping, max_length 64, torch AdamW as trainables.optim builds it); every other variant
changes one or two things. All variants train the same number of pairs after two untimed warm-up
batches; they run interleaved, `--rounds` times, and the median per variant is reported.
`compile` (torch.compile, dynamic shapes) is not in the default list: compiling takes minutes.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from common import RESULTS, chosen_variants, cpu_trial_setup, embedded_config, machine, measured, write_json

PHASES = ("tokenize", "forward", "backward", "clip", "optimizer")
# optimizer: "trainables" (trainables.optim: fused AdamW), "loop" (torch's per-parameter loop),
# "foreach"; bf16: None = trainables' choice (native bf16 only), True/False forced.
VARIANTS = {
    "ours": dict(what="trainables now: fused AdamW, bf16 autocast where the CPU has it"),
    "fp32-loop": dict(optimizer="loop", bf16=False, what="fp32, per-parameter AdamW (the loop without fused AdamW and bf16)"),
    "fp32": dict(bf16=False, what="bf16 autocast off"),
    "foreach-adamw": dict(optimizer="foreach", what="torch AdamW(foreach=True) instead of fused"),
    "st-like": dict(batch_size=8, bf16=False,
                    what="ST's batch 8, no grouping, fp32, fused AdamW: ST's work per pair"),
    "st-geometry": dict(batch_size=8, what="ST's batch 8, otherwise ours"),
    "grouped": dict(grouped=True, what="length-grouped batches (group_by_length=true)"),
    "batch32": dict(batch_size=32, what="twice the batch: half the optimiser steps per pair"),
    "pretokenized": dict(pretokenized=True, what="tokenise every pair once, pad per batch"),
    "frozen-word-emb": dict(freeze_word_embeddings=True, what="word embeddings frozen (half the parameters)"),
    "compile": dict(compile=True, what="torch.compile(model, dynamic=True)"),
}
DEFAULT_VARIANTS = [name for name in VARIANTS if name != "compile"]
WARMUP = 2


def run_variant(name: str, steps: int, threads: int, seed: int = 0) -> dict:
    import torch
    import torch.nn.functional as F

    from trainables.config import TrainConfig
    from trainables.data import worker_batches
    from common import encode_pairs, id_pair_lengths
    from trainables.optim import build_optimizer, build_scheduler, parameter_groups
    from trainables.precision import autocast_dtype

    v = {"batch_size": 16, "grouped": False, "optimizer": "trainables", "bf16": None, **VARIANTS[name]}
    cfg = TrainConfig.from_dict(embedded_config(batch_size=v["batch_size"], group_by_length=v["grouped"],
                                                num_threads=threads, seed=seed))
    device = torch.device("cpu")
    data, pairs, _, tokenizer, model = cpu_trial_setup(cfg)
    if v.get("freeze_word_embeddings"):
        model.get_input_embeddings().weight.requires_grad_(False)
    if v["optimizer"] == "trainables":
        optimizer = build_optimizer(model, cfg)
    else:
        kernel = {"loop": {"foreach": False}, "foreach": {"foreach": True}}[v["optimizer"]]
        optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, **kernel)
    scheduler = build_scheduler(optimizer, cfg, total_steps=1000)
    forward_model = torch.compile(model, dynamic=True) if v.get("compile") else model
    dtype = autocast_dtype(cfg.bf16 if v["bf16"] is None else v["bf16"], device)
    autocast = torch.autocast("cpu", dtype=dtype) if dtype else nullcontext()
    lengths = id_pair_lengths(pairs, data) if v["grouped"] else None
    # The same number of pairs whatever the batch size: WARMUP + `steps` batches of 16.
    wanted = (WARMUP + steps) * 16 // cfg.batch_size
    batches, epoch = [], 0
    while len(batches) < wanted:
        batches += worker_batches(len(pairs), epoch, cfg.seed, cfg.batch_size, 1, 0, 1, lengths)
        epoch += 1
    batches = batches[:wanted]
    warmup = WARMUP * 16 // cfg.batch_size
    cache = None
    if v.get("pretokenized"):
        encoded = tokenizer([data.queries[p.qid] for p in pairs], [data.collection[p.pid] for p in pairs],
                            truncation="only_second", max_length=cfg.max_length)
        cache = [{k: encoded[k][i] for k in encoded} for i in range(len(pairs))]
    model.train()
    spent = dict.fromkeys(PHASES, 0.0)
    real_tokens = padded_tokens = 0
    for index, (micro,) in enumerate(batches):
        if index == warmup:  # compile, allocator and oneDNN warm-up stay out of the figures
            spent = dict.fromkeys(PHASES, 0.0)
            real_tokens = padded_tokens = 0
            started = time.perf_counter()
        t0 = time.perf_counter()
        if cache is not None:
            inputs = tokenizer.pad([cache[i] for i in micro], return_tensors="pt")
            labels = torch.tensor([pairs[i].label for i in micro], dtype=torch.float32)
        else:
            inputs, labels = encode_pairs([pairs[i] for i in micro], data, tokenizer, cfg.max_length, device)
        t1 = time.perf_counter()
        with autocast:
            logits = forward_model(**inputs).logits.view(-1).float()
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        t4 = time.perf_counter()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        t5 = time.perf_counter()
        for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            spent[phase] += seconds
        real_tokens += int(inputs["attention_mask"].sum())
        padded_tokens += inputs["attention_mask"].numel()
    total = time.perf_counter() - started
    n_pairs = (wanted - warmup) * cfg.batch_size
    return {"pairs": n_pairs, "seconds": total, "pairs_per_s": n_pairs / total,
            "ms_per_16_pairs": {p: spent[p] / n_pairs * 16 * 1e3 for p in PHASES},
            "padding_share": 1 - real_tokens / padded_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed batches of 16 pairs per variant run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the variants")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"from {', '.join(VARIANTS)}")
    parser.add_argument("--out", type=Path, default=RESULTS / "profile_step.json")
    args = parser.parse_args()
    names = chosen_variants(args.variants, VARIANTS)
    runs = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names:
            runs[name].append(measured(lambda: run_variant(name, args.steps, args.threads)))
            print(f"round {round_index + 1} {name}: {runs[name][-1]['pairs_per_s']:.1f} pairs/s, other processes "
                  f"{runs[name][-1]['other_cores']:.2f} cores", file=sys.stderr)

    base = statistics.median(r["pairs_per_s"] for r in runs[names[0]])
    header = f"{'variant':<16} {'pairs/s':>8} {'vs ' + names[0]:>9} {'pad%':>5} " + \
             " ".join(f"{p:>9}" for p in PHASES) + f" {'other':>6}"
    print(f"\nprofile: packaged MiniLM, embedded data, max_length 64, {args.threads} threads, "
          f"{args.steps * 16} pairs per run, median of {args.rounds}; phases in ms per 16 pairs; other: the most "
          f"cores other processes used during a run\n{header}  what\n{'-' * (len(header) + 6)}")
    summary = {}
    for name in names:
        rate = statistics.median(r["pairs_per_s"] for r in runs[name])
        phases = {p: statistics.median(r["ms_per_16_pairs"][p] for r in runs[name]) for p in PHASES}
        pad = statistics.median(r["padding_share"] for r in runs[name])
        other = max(r["other_cores"] for r in runs[name])
        summary[name] = {"pairs_per_s": rate, "speedup": rate / base, "padding_share": pad,
                         "max_other_cores": other, "ms_per_16_pairs": phases, "what": VARIANTS[name]["what"]}
        print(f"{name:<16} {rate:8.1f} {rate / base:8.2f}x {pad * 100:4.0f}% " +
              " ".join(f"{phases[p]:9.1f}" for p in PHASES) + f" {other:6.2f}  {VARIANTS[name]['what']}")
    write_json(args.out, {"benchmark": "profile_step", "machine": machine(), "figures": summary, "runs": runs})


if __name__ == "__main__":
    main()
