"""prakash2017 against jpeg at equal bytes: where people look (NUS eye fixations) and on the whole image (Kodak).

    .venv/bin/python benchmarks/prakash2017.py --nus ../shared/data/saliency/nus-scene500 --kodak ../shared/data/kodak

For each image, jpeg is coded at JPEG_QUALITIES; its metrics are interpolated (linear in log bytes) at the size
of the prakash2017 file, so both are compared at exactly equal bytes. On NUS the fixation density (every
fixation of the 12 observers, a Gaussian of sigma = 3 % of the image width: about one degree of visual angle at
the usual viewing distances) weighs the squared error: fixation-weighted PSNR. On Kodak the paper's table:
PSNR, SSIM, MS-SSIM, PSNR-HVS and PSNR-HVS-M at the size of jpeg quality 50.
Prints tables; writes prakash2017.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import neuralcodecs as nc
from neuralcodecs import metrics

JPEG_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
SIGMA = 0.03


def _interp(bytes_at: float, sizes: list[int], values: list[float]) -> float:
    order = np.argsort(sizes)
    return float(np.interp(np.log(bytes_at), np.log(np.asarray(sizes)[order]), np.asarray(values)[order]))


def _measure(x, y, weights=None) -> dict:
    out = {"psnr": metrics.psnr(x, y)}
    if weights is not None:
        out["wpsnr"] = metrics.weighted_psnr(x, y, weights)
    else:
        out["ssim"], out["ms-ssim"] = metrics.ssim(x, y), metrics.ms_ssim(x, y)
        out["psnr-hvs"], out["psnr-hvs-m"] = metrics.psnr_hvs(x, y)
    return out


def compare(x: np.ndarray, settings: dict, quality: int, weights=None) -> dict:
    """prakash2017's metrics minus jpeg's at equal bytes, and the sizes."""
    jpeg = [(len(d), _measure(x, nc.decode(d), weights))
            for d in (nc.create_codec("jpeg", quality=q).encode(x) for q in JPEG_QUALITIES)]
    t = time.perf_counter()
    data = nc.create_codec("prakash2017", quality=quality, **settings).encode(x)
    seconds = time.perf_counter() - t
    ours = _measure(x, nc.decode(data), weights)
    row = {"bytes": len(data), "seconds": seconds,
           "jpeg_q_bytes": len(nc.create_codec("jpeg", quality=quality).encode(x))}
    for k, v in ours.items():
        row[k] = v
        row["d_" + k] = v - _interp(len(data), [s for s, _ in jpeg], [m[k] for _, m in jpeg])
    return row


def nus(folder: Path, limit: int, settings: dict, quality: int, start: int = 0) -> list[dict]:
    from scipy.io import loadmat

    fix = loadmat(folder / "fixations.mat")["fixations"]
    rows = []
    for i in range(start, min(start + limit, fix.shape[0])):
        x = nc.load_image(folder / "stimuli" / f"{i + 1:03d}.jpg")
        if x.ndim == 2:
            x = np.repeat(x[:, :, None], 3, axis=2)
        pts = [c[:, :2] - 1 for c in fix[i] if c.size]  # (row, column), 1-based in the file
        if not pts:
            continue
        h, w = x.shape[:2]
        density = metrics.fixation_density(np.concatenate(pts), h, w, SIGMA * w)
        rows.append({"image": f"{i + 1:03d}.jpg", **compare(x, settings, quality, density)})
    return rows


def kodak(folder: Path, settings: dict, quality: int) -> list[dict]:
    return [{"image": f.name, **compare(nc.load_image(f), settings, quality)} for f in sorted(folder.glob("*.png"))]


def summary(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k.startswith("d_") or k in ("seconds",)]
    out = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    out["size_error_pct"] = float(np.mean([abs(r["bytes"] / r["jpeg_q_bytes"] - 1) * 100 for r in rows]))
    out["images"] = len(rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nus", help="the nus-scene500 folder")
    ap.add_argument("--kodak", help="the Kodak folder")
    ap.add_argument("--limit", type=int, default=500, help="NUS images to use (first N)")
    ap.add_argument("--start", type=int, default=0, help="first NUS image to use (0-based)")
    ap.add_argument("--quality", type=int, default=50)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="prakash2017 settings")
    ap.add_argument("--out", default="out/prakash2017")
    args = ap.parse_args()
    from neuralcodecs.cli import parse_setting

    settings = dict(parse_setting(s) for s in args.set)
    report = {"settings": settings, "quality": args.quality, "sigma_fraction_of_width": SIGMA}
    for name, folder, fn in (("nus", args.nus, lambda f: nus(f, args.limit, settings, args.quality, args.start)),
                             ("kodak", args.kodak, lambda f: kodak(f, settings, args.quality))):
        if not folder:
            continue
        rows = fn(Path(folder))
        report[name] = {"summary": summary(rows), "images": rows}
        s = report[name]["summary"]
        print(f"{name} ({s['images']} images, prakash2017 q{args.quality} {settings or ''} vs jpeg at equal bytes): "
              + ", ".join(f"{k[2:]} {v:+.3f}" for k, v in s.items() if k.startswith("d_"))
              + f"; size off jpeg q{args.quality} by {s['size_error_pct']:.2f} % on average; "
                f"{s['seconds']:.2f} s per image")
        if name == "kodak":
            print("  mean at that size: " + ", ".join(f"{k} {np.mean([r[k] for r in rows]):.4f}" for k in
                                                       ("psnr", "ssim", "ms-ssim", "psnr-hvs", "psnr-hvs-m")))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prakash2017.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
