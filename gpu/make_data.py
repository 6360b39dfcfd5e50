"""Build the compact training set that travels to a lent GPU (the device tool carries at most 64 MiB with the
working tree): square crops of the training photos, stored as high-quality JPEG bytes in one .npz.

    .venv/bin/python gpu/make_data.py ../shared/data/train ../shared/data/saliency/nus-scene500/stimuli \
        --out gpu-data/patches.npz --patches 1024 --size 320

Kodak is never used (evaluation only). The file is not committed (the photos are for research use).
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

MAX_MIB = 13.0  # what the training data may take of the 64 MiB that travel (tests/test_gpu_plan.py checks the rest)

def build(folders: list[str], patches: int, size: int, quality: int, seed: int, max_bytes: int) -> list[bytes]:
    """Up to `patches` random crops, fewer if their JPEG bytes would pass `max_bytes` (the tree's 64 MiB with
    the weights that travel leave about MAX_MIB for the data: gpu/travel.py)."""
    from neuralcodecs.image import image_files

    files = [p for f in folders for p in image_files(f, recursive=True)]
    if not files:
        raise SystemExit(f"no images under {folders}")
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(len(files)):
        with Image.open(files[i]) as im:
            im = im.convert("RGB")
            if min(im.size) < size:
                continue
            x, y = rng.integers(0, im.size[0] - size + 1), rng.integers(0, im.size[1] - size + 1)
            buf = io.BytesIO()
            im.crop((int(x), int(y), int(x) + size, int(y) + size)).save(buf, "JPEG", quality=quality)
            if sum(map(len, out)) + len(buf.getvalue()) > max_bytes:
                break
            out.append(buf.getvalue())
        if len(out) == patches:
            break
    return out


def unpack(npz: str | Path, folder: str | Path) -> Path:
    """Write the patches out as PNG files (what the training loop reads); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with np.load(npz) as data:
        blobs, offsets = data["jpeg"], data["offsets"]
        for i in range(len(offsets) - 1):
            Image.open(io.BytesIO(blobs[offsets[i]:offsets[i + 1]].tobytes())).save(folder / f"{i:05d}.png")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--out", default="gpu-data/patches.npz")
    ap.add_argument("--patches", type=int, default=1024)
    ap.add_argument("--size", type=int, default=320)  # BSDS500 photos are 481x321
    ap.add_argument("--quality", type=int, default=93)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-mib", type=float, default=MAX_MIB, help=f"at most this much data (default {MAX_MIB})")
    args = ap.parse_args()
    blobs = build(args.folders, args.patches, args.size, args.quality, args.seed, int(args.max_mib * 2 ** 20))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    # the JPEG files back to back and where each starts (no pickled objects)
    np.savez(args.out, jpeg=np.frombuffer(b"".join(blobs), np.uint8),
             offsets=np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64))
    print(f"{args.out}: {len(blobs)} patches of {args.size}x{args.size}, {Path(args.out).stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
