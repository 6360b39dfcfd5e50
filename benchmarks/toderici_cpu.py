"""Is CPU training of the Toderici codecs useful? Their steps are expensive because each one unrolls all 16
iterations; this measures what a few CPU minutes buy when a step unrolls fewer iterations or uses smaller
crops.

    python benchmarks/toderici_cpu.py --data DIR [DIR ...] [--minutes 5] [--out results/bench]

For each setting (codec, iterations unrolled per step, crop, batch), one `neuralcodecs train` run starts from
the shipped weights on one thread, is stopped with SIGTERM after --minutes (it checkpoints), and its weights
are measured against the shipped ones on fixed crops of the evaluation images (Kodak by default, seeded):
PSNR after each iteration count (the bits per pixel are fixed by the count before entropy coding). Prints a
table and writes toderici_cpu.json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neuralcodecs import weights
from neuralcodecs.eval import list_images
from neuralcodecs.image import load_image, to_tensor
from neuralcodecs.train.loop import TrainConfig, build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also when loaded by path
from codec_speed import cpu, default_data  # noqa: E402

# (codec, iterations unrolled per step, crop, batch): the GPU runs' crops (toderici2016 codes 32x32 tiles,
# toderici2017 trained on 64x64) with all 16 iterations, then fewer iterations, then (toderici2017) smaller crops
SETTINGS = [("toderici2017", 16, 64, 8), ("toderici2017", 8, 64, 8), ("toderici2017", 4, 64, 8),
            ("toderici2017", 16, 32, 8), ("toderici2016", 16, 32, 32), ("toderici2016", 8, 32, 32),
            ("toderici2016", 4, 32, 32)]
EVAL_CROP = {"toderici2016": 32, "toderici2017": 128}
REPORTED = (1, 2, 4, 8, 12, 16)  # iteration counts in the table


def eval_crops(images: list[Path], size: int, per_image: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    crops = []
    for path in images:
        im = load_image(path, alpha="drop")
        for _ in range(per_image):
            top, left = rng.integers(0, im.shape[0] - size + 1), rng.integers(0, im.shape[1] - size + 1)
            crops.append(to_tensor(np.ascontiguousarray(im[top:top + size, left:left + size]))[0])
    return torch.stack(crops)


@torch.no_grad()
def psnr_per_iteration(model, x: torch.Tensor) -> list[float]:
    """Mean PSNR (dB, 8-bit rounding) over the crops after 1..16 iterations: the codec's training forward
    run in eval mode, which returns every iteration's reconstruction."""
    model.eval()
    model.unroll = None
    out = model(x)
    k = out["x_hat"].shape[0] // x.shape[0]
    x_hat = (out["x_hat"].clamp(0, 1) * 255).round().reshape(k, *x.shape)
    mse = (x_hat - (x * 255).round()).pow(2).mean(dim=(2, 3, 4))
    return (10 * torch.log10(255 ** 2 / mse.clamp_min(1e-10))).mean(1).tolist()


def run(codec: str, unroll: int, crop: int, batch: int, data: list[str], minutes: float, lr: float,
        workdir: Path) -> dict:
    """One training run from the shipped weights, stopped after `minutes`: its steps and final weights."""
    out = workdir / f"{codec}-u{unroll}-c{crop}"
    cmd = [sys.executable, "-m", "neuralcodecs", "train", codec, "--data", *data, "--out", str(out),
           "--steps", "100000000", "--init", "shipped", "--unroll", str(unroll), "--crop", str(crop),
           "--batch", str(batch), "--lr", str(lr), "--threads", "1", "--checkpoint-minutes", str(2 * minutes)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    time.sleep(minutes * 60)
    proc.send_signal(signal.SIGTERM)  # the loop checkpoints and exits
    proc.wait()
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    return {"steps": state["step"], "model": state["model"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="training photo folders (never the evaluation ones)")
    p.add_argument("--eval", default=None, help="evaluation images (default: Kodak)")
    p.add_argument("--minutes", type=float, default=5.0, help="training time per setting")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--codecs", nargs="+", default=["toderici2017", "toderici2016"])
    p.add_argument("--workdir", default="runs/toderici_cpu")
    p.add_argument("--out", default="results/bench")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    images = list_images(args.eval or default_data())
    rows, baseline = [], {}
    for codec, unroll, crop, batch in SETTINGS:
        if codec not in args.codecs:
            continue
        if codec not in baseline:  # the crops and the shipped weights' PSNR, once per codec
            model = build_model(TrainConfig(codec=codec, data=[], out="", steps=0))
            x = eval_crops(images, EVAL_CROP[codec], 8 if codec == "toderici2017" else 32)
            model.load_weights(weights.shipped_state(codec))
            baseline[codec] = psnr_per_iteration(model, x)
            rows.append({"codec": codec, "setting": "shipped", "steps": 0, "psnr": baseline[codec]})
            print(rows[-1], flush=True)
        t = time.time()
        result = run(codec, unroll, crop, batch, args.data, args.minutes, args.lr, Path(args.workdir))
        model.load_state_dict(result["model"])
        psnr = psnr_per_iteration(model, x)
        rows.append({"codec": codec, "setting": f"unroll {unroll}, crop {crop}, batch {batch}",
                     "unroll": unroll, "crop": crop, "batch": batch, "minutes": args.minutes,
                     "steps": result["steps"], "steps_per_s": result["steps"] / (args.minutes * 60),
                     "psnr": psnr, "gain_db": [a - b for a, b in zip(psnr, baseline[codec])],
                     "seconds": round(time.time() - t)})
        print({k: v for k, v in rows[-1].items() if k != "psnr"}, flush=True)
    print(f"\nPSNR gain (dB) over the shipped weights after {args.minutes:g} min on one thread, by iterations:")
    print("| codec | setting | steps | " + " | ".join(f"{k} it." for k in REPORTED) + " |")
    print("|---|---|---:|" + "---:|" * len(REPORTED))
    for r in rows:
        cells = r["psnr"] if r["setting"] == "shipped" else r["gain_db"]
        fmt = "{:.2f}" if r["setting"] == "shipped" else "{:+.2f}"
        print(f"| {r['codec']} | {r['setting']} | {r['steps']} | "
              + " | ".join(fmt.format(cells[k - 1]) for k in REPORTED) + " |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "toderici_cpu.json").write_text(json.dumps(
        {"minutes": args.minutes, "lr": args.lr, "eval": str(args.eval or default_data()), "rows": rows,
         "cpu": cpu()["cpu"] or "unknown"}, indent=1))


if __name__ == "__main__":
    main()
