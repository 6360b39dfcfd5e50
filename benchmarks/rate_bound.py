"""Real bytes against the model's information bound, for entropy-coded learned codecs, on a folder of images.

    python benchmarks/rate_bound.py --out DIR [--data DIR] [--codec C ...] [--quality Q ...] [--limit N]

For every rate point of each codec and every image: the bits of the chunks the range coder writes, against
the model's estimate -sum log2 p of the same quantized latents (`estimate_bits`, what training minimizes).
The two differ by the coder's overhead and by the integer tables the coder uses in place of the float
densities, so their ratio measures the coder and the tables together. The file's header is left out: it
is the same few bytes for every codec. Prints a table and writes rate_bound.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import neuralcodecs as nc
from neuralcodecs.eval import list_images
from neuralcodecs.image import pad
from neuralcodecs.learned import entropy_coded_codecs
from neuralcodecs.threads import one_thread
from neuralcodecs.registry import get_entry

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also when loaded by path
from codec_speed import default_data  # noqa: E402


def measure(name: str, quality, images: list[np.ndarray]) -> dict:
    codec = nc.create_codec(name, quality=quality)
    real, estimated, pixels = [], [], 0
    with one_thread():
        for img in images:
            x = pad(img, codec.pad_to, codec.min_side)
            real.append(8 * sum(len(c) for c in codec.encode_chunks(x)))
            estimated.append(codec.estimate_bits(x))
            pixels += img.shape[0] * img.shape[1]
    ratio = np.array(real) / np.array(estimated)
    return {"codec": name, "quality": quality, "images": len(images), "real_bpp": sum(real) / pixels,
            "estimated_bpp": sum(estimated) / pixels, "ratio_mean": float(ratio.mean()),
            "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=default_data())
    p.add_argument("--out", type=Path, required=True, help="folder for rate_bound.json")
    p.add_argument("--codec", action="append", default=None, help="codec to measure (repeatable; default: all)")
    p.add_argument("--quality", action="append", type=int, default=None,
                   help="rate point to measure (repeatable; default: every one of the codec's)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    args = p.parse_args(argv)
    images = [nc.load_image(f) for f in list_images(args.data)[: args.limit]]
    print(f"{'codec':<14}{'quality':>8}{'real bpp':>10}{'model bpp':>11}{'real/model':>12}{'min':>8}{'max':>8}")
    rows = []
    for name in args.codec or entropy_coded_codecs():
        for quality in args.quality or get_entry(name).cls.qualities:
            r = measure(name, quality, images)
            rows.append(r)
            print(f"{name:<14}{quality!s:>8}{r['real_bpp']:>10.4f}{r['estimated_bpp']:>11.4f}"
                  f"{r['ratio_mean']:>12.4f}{r['ratio_min']:>8.4f}{r['ratio_max']:>8.4f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "rate_bound.json"
    earlier = json.loads(path.read_text())["results"] if path.exists() else []
    measured = {r["codec"] for r in rows}
    out = {"data": str(args.data), "images": len(images), "neuralcodecs": nc.__version__,
           "results": [r for r in earlier if r["codec"] not in measured] + rows}
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
