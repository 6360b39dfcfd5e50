"""Seconds per training step of a learned codec under the speed options of the training loop.

    python benchmarks/train_step.py --codec balle2017 [--steps 5] [--out out/bench]

Prints a table (fp32 vs bf16 autocast, channels_last, crop size, threads, torch.compile), each a single
change from the training setting, and writes train_step.json. Each runs two untimed warm-up steps, then
the median of --steps timed ones. Inputs are photo-like (smooth random fields), not white noise.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from neuralcodecs.train.loop import TrainConfig, build_model, make_optimizers
from neuralcodecs.train.step import train_step


def time_step(codec: str, batch: int, crop: int, bf16: bool, channels_last: bool, compile_: bool,
              steps: int) -> tuple[float, int]:
    """Median seconds of one train_step, and the operators it launches."""
    torch.manual_seed(0)
    cfg = TrainConfig(codec=codec, data=[], out="", steps=0)
    model = build_model(cfg)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # smooth random fields: latents of photo-like statistics (white noise would be an unusual workload)
    x = torch.nn.functional.interpolate(torch.rand(batch, 3, crop // 8, crop // 8), size=(crop, crop), mode="bilinear")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    opt, aux = make_optimizers(model, cfg)  # the training loop's
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    model.train()
    if compile_:
        model.compile()
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        train_step(model, x, opt, aux, autocast=autocast())
        if i >= 2:
            times.append(time.perf_counter() - t)
    # PyTorch operators one step launches: what a step costs in dispatch, which is what collapses under load
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train_step(model, x, opt, aux, autocast=autocast())
    return sorted(times)[len(times) // 2], len(prof.events())


# One change at a time from the setting we train with (fp32, channels_last, crop 128, 2 threads).
VARIANTS = [
    dict(name="plain fp32", channels_last=False),
    dict(name="channels_last (used)"),
    dict(name="bf16 autocast", bf16=True),
    dict(name="torch.compile", compile_=True),
    dict(name="crop 256", crop=256),
    dict(name="1 thread", threads=1),
]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--codec", default="balle2017")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--skip", nargs="*", default=[], help="variant names to leave out")
    p.add_argument("--out", default="out/bench")
    a = p.parse_args()
    rows = []
    print(f"{'variant':<22}{'threads':>8}{'crop':>6}{'s/step':>9}{'Mpx/s':>8}{'ops':>8}")
    for v in VARIANTS:
        if v["name"] in a.skip:
            continue
        cfg = dict(threads=2, crop=128, bf16=False, channels_last=True, compile_=False) | v
        torch.set_num_threads(cfg["threads"])
        s, ops = time_step(a.codec, a.batch, cfg["crop"], cfg["bf16"], cfg["channels_last"], cfg["compile_"], a.steps)
        rows.append({"codec": a.codec, "batch": a.batch, **{k: x for k, x in cfg.items()}, "seconds_per_step": s,
                     "operators": ops})
        print(f"{v['name']:<22}{cfg['threads']:>8}{cfg['crop']:>6}{s:>9.3f}{a.batch * cfg['crop'] ** 2 / s / 1e6:>8.3f}"
              f"{ops:>8d}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_step.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
