"""Seconds per training step of a learned codec under the speed options of the training loop.

    python benchmarks/train_step.py --codec balle2017 [--steps 5] [--out out/bench]

Prints a table (fp32 vs bf16 autocast, channels_last, crop size, threads, torch.compile) and writes
train_step.json. Each configuration runs a few warm-up steps first.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from neuralcodecs.train.loop import TrainConfig, build_model


def time_step(codec: str, batch: int, crop: int, bf16: bool, channels_last: bool, compile_: bool, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(TrainConfig(codec=codec, data=[], out="", steps=0))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, crop, crop)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            res = fwd(x)
        mse = (res["x_hat"].float() - x).pow(2).mean(dim=(1, 2, 3))
        loss = (res["lmbda"] * 255 ** 2 * mse + res["bits"] / crop ** 2).mean() + model.aux_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--codec", default="balle2017")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crops", type=int, nargs="+", default=[128, 256])
    p.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--out", default="out/bench")
    a = p.parse_args()
    rows = []
    print(f"{'threads':>7} {'crop':>5} {'bf16':>5} {'ch_last':>7} {'compile':>7} {'s/step':>8} {'Mpx/s':>7}")
    for threads, crop, bf16, cl, comp in itertools.product(a.threads, a.crops, [False, True], [False, True],
                                                          [False, True] if a.compile else [False]):
        torch.set_num_threads(threads)
        s = time_step(a.codec, a.batch, crop, bf16, cl, comp, a.steps)
        rows.append({"codec": a.codec, "threads": threads, "batch": a.batch, "crop": crop, "bf16": bf16,
                     "channels_last": cl, "compile": comp, "seconds_per_step": s})
        print(f"{threads:>7} {crop:>5} {bf16!s:>5} {cl!s:>7} {comp!s:>7} {s:8.3f} {a.batch * crop * crop / s / 1e6:7.3f}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_step.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
