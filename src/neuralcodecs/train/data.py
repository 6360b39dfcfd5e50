"""Training data: random crops with flips from folders of photos, held in memory.

Photos are decoded once (a few thousand small photos fit easily in RAM) so a step never waits on image
decoding. JPEG sources carry blocking artefacts a codec would learn to reproduce: photos from JPEG files
whose short side is at least twice the crop are downscaled by 2 (box filter), which hides them.
"""
from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..image import image_files

def find_images(dirs: list[str | Path]) -> list[Path]:
    files = []
    for d in dirs:
        d = Path(d)
        files += [d] if d.is_file() else image_files(d, recursive=True)
    return files


def _load(path: Path, crop: int) -> np.ndarray | None:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if path.suffix.lower() in (".jpg", ".jpeg") and min(im.size) >= 2 * crop:
            im = im.reduce(2)
        return np.asarray(im) if min(im.size) >= crop else None


class RandomCrops:
    """Random `crop` x `crop` RGB patches, flipped at random, drawn from every photo at least that large."""

    def __init__(self, dirs: list[str | Path], crop: int, max_images: int | None = None,
                 cache: Path | None = None):
        self.crop = crop
        files = find_images(dirs)[:max_images]
        # Decoding a few thousand JPEGs takes minutes on 2 cores; a resumed run reads them back in seconds.
        key = hashlib.sha256(repr([(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files] + [crop])
                             .encode()).hexdigest()
        if cache is not None and cache.exists():
            with np.load(cache) as z:
                if str(z["key"]) == key:
                    self.images = [z[f"i{k}"] for k in range(len(z.files) - 1)]
        if not hasattr(self, "images"):
            self.images = [im for im in map(partial(_load, crop=crop), files) if im is not None]
            if cache is not None and self.images:
                tmp = cache.with_suffix(".tmp.npz")
                np.savez(tmp, key=np.array(key), **{f"i{k}": im for k, im in enumerate(self.images)})
                tmp.replace(cache)
        if not self.images:
            raise ValueError(f"no training photos of at least {crop}x{crop} pixels in {dirs}")
        # sample photos in proportion to their area, so every region of the data is equally likely
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        self.p = areas / areas.sum()

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        """n patches as float32 Nx3xHxW in [0, 1]."""
        c = self.crop
        out = np.empty((n, c, c, 3), np.uint8)
        for k, i in enumerate(rng.choice(len(self.images), size=n, p=self.p)):
            im = self.images[i]
            y = rng.integers(0, im.shape[0] - c + 1)
            x = rng.integers(0, im.shape[1] - c + 1)
            patch = im[y:y + c, x:x + c]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            if rng.random() < 0.5:
                patch = patch[::-1]
            out[k] = patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
