"""What encoder-side latent refinement (`--set refine=N`) saves, image by image, on a folder of images.

    python benchmarks/latent_refinement.py --out DIR [--data DIR] [--codec C] [--steps N] [--quality Q]
                                           [--limit N] [--crop H W]

For each image: the codec's files at rate points Q-1, Q and Q+1 without refinement (its own curve through
that image), and at Q with N steps of refinement. The saving is the refined file's bytes against the bytes
the plain curve needs for the same PSNR (read off the curve linearly in PSNR against log bytes, between
the two rate points around it; the curve is concave there, so this slightly flatters the refinement when
its point falls between two of them). Negative: fewer bytes. Prints a table and writes latent_refinement.json.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

import neuralcodecs as nc
from neuralcodecs.eval import list_images
from neuralcodecs.metrics import psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also when loaded by path
from codec_speed import default_data  # noqa: E402


def _point(name: str, quality: int, image: np.ndarray, refine: int = 0) -> tuple[int, float, float]:
    """(bytes, PSNR, encoding seconds) of one real file."""
    codec = nc.create_codec(name, quality=quality, refine=refine)
    t = time.perf_counter()
    data = codec.encode(image)
    seconds = time.perf_counter() - t
    return len(data), float(psnr(image, nc.decode(data))), seconds


def bytes_at(curve: list[tuple[int, float]], target: float) -> float:
    """Bytes the curve [(bytes, PSNR), ...] (rising) needs for PSNR `target`: linear in PSNR against log
    bytes between the two points around it (the nearest two at either end)."""
    i = 1 if target <= curve[1][1] else 2
    (b0, p0), (b1, p1) = curve[i - 1], curve[i]
    return b0 * math.exp((target - p0) / (p1 - p0) * math.log(b1 / b0))


def measure(name: str, quality: int, steps: int, image: np.ndarray) -> dict:
    curve = [_point(name, q, image)[:2] for q in (quality - 1, quality, quality + 1)]
    size, quality_db, seconds = _point(name, quality, image, steps)
    return {"bytes": size, "psnr": quality_db, "encode_s": seconds, "plain_bytes": curve[1][0],
            "plain_psnr": curve[1][1], "saving": size / bytes_at(curve, quality_db) - 1}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=default_data())
    p.add_argument("--out", type=Path, required=True, help="folder for latent_refinement.json")
    p.add_argument("--codec", default="minnen2018")
    p.add_argument("--steps", type=int, default=40, help="refinement steps (the codec's refine setting)")
    p.add_argument("--quality", type=int, default=5, help="rate point (it needs one below and one above)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="code only the top-left H x W of each image (for a quick run)")
    args = p.parse_args(argv)
    rows = []
    print(f"{'image':<40}{'plain bytes':>12}{'dB':>8}{'refined bytes':>15}{'dB':>8}{'saving':>9}{'encode s':>10}")
    for f in list_images(args.data)[: args.limit]:
        image = nc.load_image(f)
        if args.crop:
            image = np.ascontiguousarray(image[: args.crop[0], : args.crop[1]])
        r = {"image": Path(f).name, **measure(args.codec, args.quality, args.steps, image)}
        rows.append(r)
        print(f"{r['image']:<40}{r['plain_bytes']:>12}{r['plain_psnr']:>8.3f}{r['bytes']:>15}{r['psnr']:>8.3f}"
              f"{100 * r['saving']:>8.1f}%{r['encode_s']:>10.1f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "latent_refinement.json"
    out = {"data": str(args.data), "codec": args.codec, "quality": args.quality, "steps": args.steps,
           "neuralcodecs": nc.__version__, "mean_saving": float(np.mean([r["saving"] for r in rows])),
           "results": rows}
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"mean saving {100 * out['mean_saving']:+.1f} %; wrote {path}")


if __name__ == "__main__":
    main()
