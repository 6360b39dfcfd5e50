"""Our `jpeg` against CompressAI's published JPEG point on Kodak: a check of rate and metrics.

    python benchmarks/jpeg_reference.py [--data ../shared/data/kodak] [--quality 75] [--out out/bench]

CompressAI's jpeg.json sweeps Pillow quality 5, 10, ..., 95 (so q=75 is its 15th point). It was made with
Pillow 7.1.2, whose wheels bundled the IJG libjpeg 9 rather than libjpeg-turbo. Both write the same
bytes at the same quality (the encoder is the same), but libjpeg 9 upsamples 4:2:0 chroma differently
when decoding, which lowers PSNR. So this prints mean bpp and PSNR for our files decoded by our decoder
(libjpeg-turbo) and by IJG libjpeg 9e (through jpeglib), beside the reference point, and writes
jpeg_reference.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import neuralcodecs as nc
from neuralcodecs.eval import list_images
from neuralcodecs.metrics import bpp as bits_per_pixel, psnr

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / ".." / "shared" / "reference" / "compressai-kodak" / "jpeg.json"
REFERENCE_QUALITIES = list(range(5, 100, 5))


def main(argv: list[str] | None = None) -> None:
    import jpeglib

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "kodak")
    p.add_argument("--reference", type=Path, default=REFERENCE)
    p.add_argument("--quality", type=int, default=75, choices=REFERENCE_QUALITIES)
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    a = p.parse_args(argv)

    codec = nc.create_codec("jpeg", quality=a.quality)
    bpp, ours, ijg9 = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for path in list_images(a.data):
            x = nc.load_image(path)
            jpg = codec.encode_native(x)
            bpp.append(bits_per_pixel(len(jpg), *x.shape[:2]))
            ours.append(psnr(x, nc.decode(codec.encode(x))))
            f = Path(tmp) / "x.jpg"
            f.write_bytes(jpg)
            with jpeglib.version("9e"):
                ijg9.append(psnr(x, jpeglib.read_spatial(str(f)).spatial))
    ref = json.loads(a.reference.read_text())["results"]
    i = REFERENCE_QUALITIES.index(a.quality)
    rows = [("ours, libjpeg-turbo decode", np.mean(bpp), np.mean(ours)),
            ("ours, IJG libjpeg 9e decode", np.mean(bpp), np.mean(ijg9)),
            ("CompressAI jpeg.json", ref["bpp"][i], ref["psnr-rgb"][i])]
    print(f"JPEG quality {a.quality} on {len(bpp)} images")
    print(f"{'':<30}{'bpp':>8}{'PSNR dB':>10}{'d bpp %':>9}{'d PSNR':>9}")
    for name, b, q in rows:
        print(f"{name:<30}{b:>8.4f}{q:>10.3f}{100 * (b / rows[2][1] - 1):>9.2f}{q - rows[2][2]:>9.3f}")
    a.out.mkdir(parents=True, exist_ok=True)
    doc = {"quality": a.quality, "images": len(bpp),
           "rows": [{"name": n, "bpp": float(b), "psnr-rgb": float(q)} for n, b, q in rows]}
    (a.out / "jpeg_reference.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {a.out / 'jpeg_reference.json'}")


if __name__ == "__main__":
    main()
