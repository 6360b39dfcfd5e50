"""toderici2016 against JPEG on 32x32 tiles, the setting of Toderici et al. (ICLR 2016).

    python benchmarks/toderici_tiles.py --out DIR [--data DIR] [--tiles-per-image N] [--seed S]

Random 32x32 tiles (seeded) are cut from every image of the folder (Kodak by default). For each tile and each
iteration count k, toderici2016's payload is k x 128 bits (16 k bytes; the file's header is left out). JPEG is
counted the way the paper counts it, without its header: only the entropy-coded scan, the bytes between the
SOS segment and the EOI marker. For each tile and k, JPEG gets the highest quality (1-100) whose scan fits in
the same 16 k bytes, so it never has more bytes than the network; tiles where even quality 1 does not fit are
counted as JPEG failures and left out of both means. Prints SSIM (and PSNR) per k and writes
toderici_tiles.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import neuralcodecs as nc
from neuralcodecs.codecs.toderici2016 import BITS, ITERATIONS, TILE
from neuralcodecs.eval import list_images
from neuralcodecs.threads import one_thread
from neuralcodecs.metrics import psnr, ssim

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also when loaded by path
from codec_speed import default_data  # noqa: E402


def jpeg_scan_bytes(data: bytes) -> int:
    """Bytes of a baseline JPEG's entropy-coded scan: after the SOS segment, before EOI."""
    sos = data.index(b"\xff\xda")
    length = int.from_bytes(data[sos + 2:sos + 4], "big")  # the SOS segment's own length, its marker excluded
    return data.rindex(b"\xff\xd9") - (sos + 2 + length)


def cut_tiles(images: list[np.ndarray], per_image: int, rng: np.random.Generator) -> list[np.ndarray]:
    tiles = []
    for img in images:
        for _ in range(per_image):
            y = rng.integers(0, img.shape[0] - TILE + 1)
            x = rng.integers(0, img.shape[1] - TILE + 1)
            tiles.append(np.ascontiguousarray(img[y:y + TILE, x:x + TILE]))
    return tiles


def toderici_curves(tiles: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Per tile, its reconstruction after k = 1..ITERATIONS iterations. The codec cuts an image into tiles and
    codes each one on its own, so the tiles are laid side by side and coded as one row (one batch)."""
    codec = nc.create_codec("toderici2016", quality=ITERATIONS)
    row = np.concatenate(tiles, axis=1)
    with one_thread():
        chunks = codec.encode_chunks(row)
        out = []
        for k in range(1, ITERATIONS + 1):
            decoded = codec.decode_chunks(chunks[:k], row.shape)
            out.append(np.split(decoded, len(tiles), axis=1))
    return [[out[k][i] for k in range(ITERATIONS)] for i in range(len(tiles))]


def jpeg_points(tile: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """(quality, scan bytes, decoded tile) for every JPEG quality."""
    points = []
    for q in range(1, 101):
        codec = nc.create_codec("jpeg", quality=q)
        (data,) = codec.encode_chunks(tile)  # the JPEG file itself
        points.append((q, jpeg_scan_bytes(data), codec.decode_chunks([data], tile.shape)))
    return points


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=str(default_data()))
    p.add_argument("--tiles-per-image", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    images = [nc.load_image(f) for f in list_images(args.data)]
    tiles = cut_tiles(images, args.tiles_per_image, np.random.default_rng(args.seed))
    recons = toderici_curves(tiles)
    jpegs = [jpeg_points(t) for t in tiles]
    rows = []
    for k in range(1, ITERATIONS + 1):
        budget = k * BITS // 8
        net_ssim, net_psnr, jp_ssim, jp_psnr, jp_bytes, failed = [], [], [], [], [], 0
        for tile, rec, points in zip(tiles, recons, jpegs):
            fits = [pt for pt in points if pt[1] <= budget]
            if not fits:
                failed += 1
                continue
            q, n, dec = max(fits, key=lambda pt: pt[0])
            net_ssim.append(ssim(tile, rec[k - 1]))
            net_psnr.append(psnr(tile, rec[k - 1]))
            jp_ssim.append(ssim(tile, dec))
            jp_psnr.append(psnr(tile, dec))
            jp_bytes.append(n)
        n_ok = len(net_ssim)
        rows.append({"iterations": k, "bytes": budget, "bpp": budget * 8 / TILE ** 2, "tiles": n_ok,
                     "jpeg_does_not_fit": failed,
                     "toderici2016_ssim": float(np.mean(net_ssim)) if n_ok else None,
                     "jpeg_ssim": float(np.mean(jp_ssim)) if n_ok else None,
                     "toderici2016_psnr": float(np.mean(net_psnr)) if n_ok else None,
                     "jpeg_psnr": float(np.mean(jp_psnr)) if n_ok else None,
                     "jpeg_mean_bytes": float(np.mean(jp_bytes)) if n_ok else None,
                     "toderici2016_wins": int(np.sum(np.array(net_ssim) > np.array(jp_ssim)))})
    print(f"{len(tiles)} tiles of {TILE}x{TILE} from {args.data}; JPEG counted without its header (scan bytes only)")
    print("| iterations | bytes | bpp | tiles (JPEG fits) | SSIM toderici2016 | SSIM jpeg | PSNR toderici2016 | PSNR jpeg "
          "| jpeg bytes (mean) | toderici2016 higher SSIM |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if not r["tiles"]:
            print(f"| {r['iterations']} | {r['bytes']} | {r['bpp']:.3f} | 0 | | | | | | |")
            continue
        print(f"| {r['iterations']} | {r['bytes']} | {r['bpp']:.3f} | {r['tiles']} | {r['toderici2016_ssim']:.4f} | "
              f"{r['jpeg_ssim']:.4f} | {r['toderici2016_psnr']:.2f} | {r['jpeg_psnr']:.2f} | "
              f"{r['jpeg_mean_bytes']:.1f} | {r['toderici2016_wins']} of {r['tiles']} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "toderici_tiles.json").write_text(json.dumps({"data": args.data, "seed": args.seed, "tiles": len(tiles),
                                                         "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
