"""Optimizer state bytes and mean step time of every optimizer on each backbone's base size.

    .venv/bin/python benchmarks/optimizer_memory.py [--steps 3] [--backbones minilm,modernbert,gte]
        [--optimizers adamw,lion,...] [--threads 2]

Each backbone is built from its transformers config at the real base size with random weights
(no download): MiniLM-L12-H384 (BertConfig), ModernBERT-base (ModernBertConfig's defaults) and
GTE-multilingual-base (GteConfig's defaults: hidden 768, 12 layers, XLM-R's 250k vocabulary).
A step is trainables.step.train_step (fp32 forward, backward, clip, optimizer and schedule) on a
batch of 8 pairs of 128 random tokens; a first step (its time kept apart: it allocates the state),
then --steps timed ones. State bytes are trainables.optim.state_bytes after the last step. bf16 autocast is off: CPUs differ in
native bf16 and the state is fp32 either way. torch.optim.Muon runs its Newton-Schulz iterations
in bf16 whatever the device: on a CPU without native bf16 (no AVX512-BF16 or AMX) that is emulated,
~25x slower than fp32 matmuls, and one MiniLM step takes many minutes; leave muon out there
(--optimizers). The file is rewritten after every optimizer, so a run cut short keeps its rows.
Writes benchmarks/results/optimizer_memory.json.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from pathlib import Path

from common import RESULTS, machine, write_json

BATCH, TOKENS = 8, 128
# lr values inside each optimizer's range (spaces/); they change the state's size and the step's cost not at all
LRS = {"adamw": 2e-5, "lion": 3e-6, "apollo": 2e-5, "apollo_mini": 2e-5, "muon": 1e-4, "adamw_schedulefree": 5e-5}


def backbone_config(name: str):
    import transformers
    common = dict(num_labels=1)
    if name == "minilm":  # microsoft/MiniLM-L12-H384-uncased's shape
        return transformers.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=12,
                                       num_attention_heads=12, intermediate_size=1536, **common)
    if name == "modernbert":  # ModernBertConfig's defaults are ModernBERT-base's
        return transformers.ModernBertConfig(**common)
    if name == "gte":  # GteConfig's defaults are gte-multilingual-base's (vocab 250048, hidden 768, 12 layers)
        return transformers.GteConfig(**common)
    raise SystemExit(f"error: unknown backbone {name!r}")


def measure(model, optimizer_name: str, steps: int) -> dict:
    import torch

    from trainables.config import TrainConfig
    from trainables.optim import build_optimizer, build_scheduler, state_bytes, training_weights
    from trainables.step import StepSettings, train_step
    cfg = TrainConfig(model="m", data_dir="d", optimizer=optimizer_name, lr=LRS[optimizer_name],
                      aux_lr=2e-5 if optimizer_name == "muon" else None,
                      scheduler="constant" if optimizer_name == "adamw_schedulefree" else "linear")
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps=steps + 1)
    training_weights(optimizer)
    generator = torch.Generator().manual_seed(0)
    inputs = {"input_ids": torch.randint(5, model.config.vocab_size, (BATCH, TOKENS), generator=generator),
              "attention_mask": torch.ones(BATCH, TOKENS, dtype=torch.long)}
    batch = [(inputs, torch.randint(0, 2, (BATCH,), generator=generator).float())]
    settings = StepSettings(batch_size=BATCH, world_size=1, grad_clip=1.0)
    model.train()
    began = time.perf_counter()
    train_step(model, batch, optimizer, scheduler, settings)  # not in the mean: it allocates the state
    first_step_s = time.perf_counter() - began
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        train_step(model, batch, optimizer, scheduler, settings)
        times.append(time.perf_counter() - began)
    # the host's load: this machine is shared, and a busy neighbour slows a 2-thread step several-fold
    result = {"state_bytes": state_bytes(optimizer), "step_s_mean": statistics.mean(times) if times else None,
              "step_s": [round(t, 3) for t in times], "first_step_s": round(first_step_s, 3),
              "load_average_1m": round(os.getloadavg()[0], 2)}
    del optimizer, scheduler
    gc.collect()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3,
                        help="timed steps per optimizer after the first (0: state bytes and the first step's time only)")
    parser.add_argument("--backbones", default="minilm,modernbert,gte")
    parser.add_argument("--optimizers", default=",".join(LRS))
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--output", default=str(RESULTS / "optimizer_memory.json"))
    parser.add_argument("--keep-others", action="store_true",
                        help="keep the output file's rows of backbones this run does not measure "
                             "(fewer steps for the slow base models, in a second run)")
    args = parser.parse_args()
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    earlier = json.loads(Path(args.output).read_text()) if args.keep_others and Path(args.output).is_file() else None
    rows = []
    for backbone in args.backbones.split(","):
        torch.manual_seed(0)
        model = transformers.AutoModelForSequenceClassification.from_config(backbone_config(backbone))
        params = sum(p.numel() for p in model.parameters())
        print(f"{backbone}: {params / 1e6:.1f}M parameters", flush=True)
        for name in args.optimizers.split(","):
            result = measure(model, name, args.steps)
            rows.append({"backbone": backbone, "optimizer": name, "parameters": params,
                         "state_bytes_per_parameter": result["state_bytes"] / params, **result})
            step = result["step_s_mean"] if result["step_s_mean"] is not None else result["first_step_s"]
            print(f"  {name:<19} state {result['state_bytes'] / 2**20:9.1f} MiB ({result['state_bytes'] / params:.2f} "
                  f"B/param)  {'step' if result['step_s'] else 'first step'} {step:.2f} s", flush=True)
            model.zero_grad(set_to_none=True)
            save(args, earlier, rows)
        del model
        gc.collect()


def save(args, earlier: dict | None, rows: list[dict]) -> None:
    """The rows so far, after the earlier file's rows of other backbones (--keep-others)."""
    command = "benchmarks/optimizer_memory.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("output", "keep_others"))
    if earlier:
        rows = [r for r in earlier["rows"] if r["backbone"] not in {row["backbone"] for row in rows}] + rows
    write_json(args.output, {"commands": (earlier["commands"] if earlier else []) + [command],
                             "batch": BATCH, "tokens": TOKENS, "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
