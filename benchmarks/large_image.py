"""Memory and time of the learned transform codecs on a large image, and what their tiling costs.

    .venv/bin/python benchmarks/large_image.py [--codec balle2017 theis2017] [--kodak ../shared/data/kodak]

1. A 4000x3000 photo (the shipped sample, mirrored into a mosaic) is encoded and, in another process, decoded;
   each process reports its peak resident memory (ru_maxrss) and time.
2. With --kodak: every Kodak image coded in tiles of 256 pixels (each tile cut out of its neighbours'
   context, the path large images take) against coded whole (in one piece, not in the two halves coding
   cuts it into by default): mean PSNR and bytes difference.
Prints tables and writes large_image.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import resource, sys, time, numpy as np, neuralcodecs as nc
mode, name, path = sys.argv[1:4]
t = time.perf_counter()
if mode == "encode":
    img = np.load(path + ".npy")
    data = nc.create_codec(name).encode(img)
    open(path + "." + name, "wb").write(data)
else:
    out = nc.decode(open(path + "." + name, "rb").read())
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def mosaic(h: int, w: int) -> np.ndarray:
    import neuralcodecs as nc

    tile = nc.load_image(ROOT / "samples" / "kodim23.png")
    row = np.concatenate([tile, tile[:, ::-1]] * (w // (2 * tile.shape[1]) + 1), axis=1)
    grid = np.concatenate([row, row[::-1]] * (h // (2 * tile.shape[0]) + 1), axis=0)
    return np.ascontiguousarray(grid[:h, :w])


def large(codecs: list[str], out: Path) -> list[dict]:
    base = out / "large"
    np.save(str(base) + ".npy", mosaic(3000, 4000))
    rows = []
    for name in codecs:
        row = {"codec": name, "width": 4000, "height": 3000}
        for mode in ("encode", "decode"):
            res = subprocess.run([sys.executable, "-c", _CHILD, mode, name, str(base)], capture_output=True,
                                 text=True, check=True)
            seconds, rss = res.stdout.split()[-2:]
            row[f"{mode}_s"], row[f"{mode}_peak_rss_mb"] = round(float(seconds), 1), round(int(rss) / 2 ** 20)
        row["bytes"] = (Path(f"{base}.{name}")).stat().st_size
        rows.append(row)
        print(f"{name:10s} 4000x3000: encode {row['encode_s']:6.1f} s peak {row['encode_peak_rss_mb']:5d} MB | "
              f"decode {row['decode_s']:6.1f} s peak {row['decode_peak_rss_mb']:5d} MB | {row['bytes']} bytes")
    return rows


def tiling_effect(codecs: list[str], kodak: Path) -> list[dict]:
    import neuralcodecs as nc
    from neuralcodecs.codec import decoder_for
    from neuralcodecs.container import read_header
    from neuralcodecs.metrics import psnr

    rows = []
    files = sorted(kodak.glob("*.png"))
    for name in codecs:
        whole_psnr, tiled_psnr, whole_bytes, tiled_bytes = [], [], 0, 0
        for f in files:
            x = nc.load_image(f)
            enc = nc.create_codec(name)
            dec = decoder_for(read_header(enc.encode(x)))  # the cached decoder nc.decode uses
            try:
                for codec in (enc, dec):  # one piece: no side long enough to cut
                    codec.tile = codec.split = 1 << 30
                data = enc.encode(x)
                whole_psnr.append(psnr(x, nc.decode(data)))
                whole_bytes += len(data)
                for codec in (enc, dec):
                    codec.tile = 256
                tiled = enc.encode(x)
                tiled_psnr.append(psnr(x, nc.decode(tiled)))
            finally:
                for attr in ("tile", "split"):
                    dec.__dict__.pop(attr, None)
            tiled_bytes += len(tiled)
        row = {"codec": name, "images": len(files), "psnr_whole": float(np.mean(whole_psnr)),
               "psnr_tiled": float(np.mean(tiled_psnr)),
               "psnr_max_abs_diff": float(np.max(np.abs(np.subtract(whole_psnr, tiled_psnr)))),
               "bytes_whole": whole_bytes, "bytes_tiled": tiled_bytes,
               "bytes_change_pct": 100 * (tiled_bytes - whole_bytes) / whole_bytes}
        rows.append(row)
        print(f"{name:10s} Kodak in 256-px tiles vs whole: PSNR {row['psnr_tiled']:.4f} vs {row['psnr_whole']:.4f} dB "
              f"(largest per-image difference {row['psnr_max_abs_diff']:.4f} dB), bytes {row['bytes_change_pct']:+.3f} %")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codec", nargs="+", default=["balle2017", "theis2017"])
    ap.add_argument("--kodak", help="folder of Kodak images, for the tiling's effect")
    ap.add_argument("--out", default="out/large_image")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    report = {"large": large(args.codec, out)}
    if args.kodak:
        report["tiling"] = tiling_effect(args.codec, Path(args.kodak))
    report["seconds"] = time.time() - t
    (out / "large_image.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
