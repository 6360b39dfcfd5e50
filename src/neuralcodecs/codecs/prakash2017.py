"""Prakash, Moran, Garber, DiLillo, Storer, "Semantic Perceptual Image Compression using Deep Convolution
Networks", DCC 2017.

    x -> EfficientNet-Lite0 (ImageNet, global average pooling) on the whole image
      -> class activation maps (Zhou et al. 2016) of the top-k classes, each rectified and scaled to [0, 1],
         summed with the classes' softmax probabilities as weights: the multi-structure region of interest,
         mixed half and half with a centred Gaussian (people look at the middle of photos: beyond the paper) -> m
    x -> YCbCr 4:2:0 -> 8x8 DCT -> per block, a quantizer step k * T (T: one standard-form table for the file,
         k = round(1 / w) from the block's weight w = floor + (1 - floor) * m, so 1 where m = 1; the 15 lowest
         frequencies keep k = 1, but for the rate control's last trim, which adds one multiple to every step
         of the least important blocks)
      -> one baseline JPEG (standard Huffman tables): the file's one chunk, readable by any JPEG decoder
    decode: any JPEG decoder

Beyond the paper: the paper's code blends decoded pixels of JPEGs at several qualities by the map and then
re-quantizes everything with one table, so the regions of interest lose part of what they were given. Here
the coefficients themselves are quantized per block: every block is stored as multiples k of the one table's
steps (what a decoder multiplies by), so an important block keeps the fine step T and an unimportant one is
coded with a coarser k * T, inside one standard file. The paper's blend is kept as `mode="blend"` for
comparison.

A block's importance is the map's mean over its pixels (8x8 for luma, 16x16 for chroma). floor = 0.4 (1 / w
runs from 1 to 2.5, and numpy rounds halves to even, so k is 1 or 2: 2 where the map is below 4/9), the low
frequencies kept (see _LOW) and the centre prior weight 0.5 were chosen on NUS and Kodak; the measurements, including rate-distortion optimized choices of k,
are in the README and results/prakash2017.

Rate: quality q asks for the size of a plain `jpeg` file at quality q (as the paper matches its files to
quality 50), or `target_bytes` for a given size; the table's quality (continuous, libjpeg's scaling)
is searched so the file is within 1 % of it.

Known faults of the public code avoided here: the map covers the whole image (not a 224x224 centre crop),
the network is in eval mode (no dropout: the same map every time), and everything is vectorized.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..codec import ENCODER_ONLY, Codec, Command, HostedCodec, check_number, check_quality
from ..image import load_image, pad, save_image
from ..nn.classifier import efficientnet_lite0, normalize
from ..registry import create_codec, register

TOP_K = 5            # classes combined into the map (the paper's top-5)
MAP_SIDE = 512       # the classifier sees the image with its longer side at this many pixels
MAX_STEP = 8         # the coarsest per-block multiple the map gives (the rate control's trim may add one)
SIZE_TOLERANCE = 0.01
# The lowest frequencies (u + v < 5, 15 of 64) keep the table's step in every block: the eye is most sensitive
# to them (contrast sensitivity) and a block's coarser step applies to the rest. The cut trades PSNR-HVS-M on
# Kodak against fixation-weighted PSNR on NUS (README: "prakash2017's constants").
_LOW = (np.arange(8)[:, None] + np.arange(8)[None, :]) < 5


# -- the map -------------------------------------------------------------------------------------------------
@torch.no_grad()
def roi_map(x: np.ndarray, k: int, centre: float) -> np.ndarray:
    """Multi-structure region of interest of a uint8 HxWx3 image: float32 HxW in [0, 1]; `centre` mixes in a
    centred Gaussian (sigma a quarter of each side), the centre bias of where people look at photos."""
    from PIL import Image

    h, w = x.shape[:2]
    scale = MAP_SIDE / max(h, w)
    small = np.asarray(Image.fromarray(x).resize((max(32, round(w * scale)), max(32, round(h * scale))),
                                                 Image.BICUBIC))
    net = efficientnet_lite0()
    features = net.extract_features(normalize(small))[0]           # 1280 x h' x w'
    probs = torch.softmax(net._fc(features.mean(dim=(1, 2))), dim=0)
    top = torch.topk(probs, k)
    cams = torch.einsum("kc,chw->khw", net._fc.weight[top.indices], features).clamp(min=0)
    cams = cams / cams.amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)
    m = (top.values[:, None, None] * cams).sum(0) / top.values.sum()
    m = F.interpolate(m[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    m = (m - m.min()) / (m.max() - m.min()).clamp(min=1e-12)
    if centre:
        yy = (torch.arange(h) + 0.5) / h - 0.5
        xx = (torch.arange(w) + 0.5) / w - 0.5
        g = torch.exp(-(yy[:, None] ** 2 + xx[None, :] ** 2) / (2 * 0.25 ** 2))
        m = (1 - centre) * m + centre * g
    return m.numpy().astype(np.float32)


# -- JPEG from DCT coefficients ---------------------------------------------------------------------------------
def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    d = np.sqrt(2 / 8) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16)
    d[0] /= np.sqrt(2)
    return d


_D = _dct_matrix()


def _blocks(p: np.ndarray) -> np.ndarray:
    h, w = p.shape
    return p.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)


def _standard_tables() -> np.ndarray:
    import jpeglib

    return jpeglib.qf_to_qt(50).astype(np.float64)  # quality 50 is the standard tables themselves


def tables(quality: float) -> np.ndarray:
    """libjpeg's quality scaling of the standard tables, for a real-valued quality in [1, 100]."""
    q = min(max(quality, 1.0), 100.0)
    scale = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    return np.clip(np.floor((_standard_tables() * scale + 50) / 100), 1, 255)


class DCTImage:
    """An image's DCT coefficients (JPEG's YCbCr 4:2:0, level-shifted, orthonormal 8x8 DCT) and per-block
    weights from a map, ready to be quantized and written as baseline JPEG any number of times."""

    def __init__(self, x: np.ndarray, importance: np.ndarray):
        self.h, self.w = x.shape[:2]
        f = pad(x.astype(np.float64), 16)  # whole macroblocks (16x16 luma, 8x8 of each subsampled chroma)
        ph, pw = f.shape[:2]
        r, g, b = f[..., 0], f[..., 1], f[..., 2]
        y = 0.299 * r + 0.587 * g + 0.114 * b
        cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
        cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
        half = lambda p: p.reshape(ph // 2, 2, pw // 2, 2).mean(axis=(1, 3))  # noqa: E731
        self.coefs = [_D @ _blocks(p - 128) @ _D.T for p in (y, half(cb), half(cr))]
        m = pad(importance.astype(np.float64)[..., None], 16)[..., 0]
        self.block_map = [_blocks(m).mean(axis=(2, 3)), _blocks(half(m)).mean(axis=(2, 3))]

    def quantize(self, table: np.ndarray, floor: float | None, trim: float = 0.0) -> list[np.ndarray]:
        """Integer coefficients for the tables (2x8x8: luma, chroma): each block quantized with the step k * T,
        k = round(1 / w) for its weight w = floor + (1 - floor) * importance (k = 1 everywhere if floor is None),
        the lowest frequencies at k = 1; then every step of the blocks whose importance is below `trim` one
        multiple coarser (the rate control's fine knob, taking the least important blocks first)."""
        out = []
        for c, coefs in enumerate(self.coefs):
            t, m = table[min(c, 1)], self.block_map[min(c, 1)]
            k = np.ones_like(m) if floor is None else np.clip(np.round(1 / (floor + (1 - floor) * m)), 1, MAX_STEP)
            k = np.where(_LOW, 1.0, k[..., None, None]) + (m < trim)[..., None, None]
            out.append((np.round(coefs / (k * t)) * k).astype(np.int16))
        return out

    def jpeg(self, quality: float, floor: float | None, trim: float = 0.0) -> bytes:
        import jpeglib

        table = tables(quality)
        y, cb, cr = self.quantize(table, floor, trim)
        # libjpeg's components have ceil(side / 8) blocks of luma and ceil(side / 16) of 4:2:0 chroma: the
        # blocks past them (our padding to whole 16-pixel macroblocks) are not in the file
        y = y[:-(-self.h // 8), :-(-self.w // 8)]
        cb, cr = (c[:-(-self.h // 16), :-(-self.w // 16)] for c in (cb, cr))
        im = jpeglib.from_dct(Y=y, Cb=cb, Cr=cr, qt=table.astype(np.uint16))
        im.height, im.width = self.h, self.w
        fd, path = tempfile.mkstemp(suffix=".jpg")
        os.close(fd)
        try:
            im.write_dct(path)
            return Path(path).read_bytes()
        finally:
            os.unlink(path)


def _bisect(make, target: int, lo: float, hi: float, larger_is_bigger: bool) -> tuple[bytes, float]:
    """Bisection of make(v) on v in [lo, hi] toward `target` bytes: the file nearest it and, for the next
    search, the v of the smallest file that is still at least `target` (hi if none)."""
    best, above = None, hi
    for _ in range(24):
        mid = (lo + hi) / 2
        data = make(mid)
        if best is None or abs(len(data) - target) < abs(len(best) - target):
            best = data
        if abs(len(data) - target) <= SIZE_TOLERANCE * target:
            break
        if (len(data) < target) == larger_is_bigger:
            lo = mid
        else:
            hi = mid
            above = mid
        if hi - lo < 1e-4:
            break
    return best, above


def rate_controlled(make, target: int) -> bytes:
    """make(quality, trim) -> bytes; a file within SIZE_TOLERANCE of `target` bytes where the search can reach
    it: the table's quality first (sizes jump where the table's small integer steps change), then, at the
    quality just above the target, `trim` (a coarser step for the least important blocks, one block at a time)."""
    data, quality = _bisect(lambda q: make(q, 0.0), target, 1.0, 100.0, larger_is_bigger=True)
    if abs(len(data) - target) <= SIZE_TOLERANCE * target:
        return data
    trimmed, _ = _bisect(lambda t: make(quality, t), target, 0.0, 1.0001, larger_is_bigger=False)
    return min((data, trimmed), key=lambda d: abs(len(d) - target))


@register("prakash2017")
class Prakash2017(HostedCodec, Codec):
    __doc__ = __doc__  # the module's: the paper and the data flow, for help()
    quality_meaning = "the file is as large as a plain jpeg at this quality (1-100)"
    learned = True  # a classifier decides where the JPEG spends its bits

    @dataclass(frozen=True)
    class Config:
        quality: int = 50       # the file is as large as a plain `jpeg` file at this quality
        # The rest steer the encoder only: the decoder reads the JPEG, so files leave them out (ENCODER_ONLY;
        # an ROI's path stays on the machine that encoded).
        # "dct": per-block quantizer steps in one JPEG; "blend": the paper's pixel blend
        mode: str = field(default="dct", metadata=ENCODER_ONLY)
        # weight of a block the map gives 0 (1 where it gives 1); its step is T / weight
        floor: float = field(default=0.4, metadata=ENCODER_ONLY)
        target_bytes: int = field(default=0, metadata=ENCODER_ONLY)  # a size in bytes to hit (0: quality decides)
        # a grayscale image (white = important) to use instead of the classifier's map
        roi: str = field(default="", metadata=ENCODER_ONLY)
        top_k: int = field(default=TOP_K, metadata=ENCODER_ONLY)
        # weight of a centre prior mixed into the map (0: the classifier's map alone)
        centre: float = field(default=0.5, metadata=ENCODER_ONLY)

        def __post_init__(self):
            check_quality("prakash2017", self.quality, 1, 100)
            if self.mode not in ("dct", "blend"):
                raise ValueError(f"prakash2017 mode must be 'dct' or 'blend', got {self.mode!r}")
            # a block of weight 0 would have no quantizer step
            check_number("prakash2017 floor", self.floor, 0, 1, integer=False, above_lo=True)
            check_number("prakash2017 target_bytes", self.target_bytes, 0, math.inf)
            check_number("prakash2017 centre", self.centre, 0, 1, integer=False)
            check_number("prakash2017 top_k", self.top_k, 1, 1000)
            if not isinstance(self.roi, str):
                raise ValueError(f"prakash2017 roi is a path (or empty), got {self.roi!r}")

    qualities: ClassVar[tuple] = (5, 10, 15, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95)

    def importance(self, x: np.ndarray) -> np.ndarray:
        """The map this codec spends bits by: the user's ROI image, or the classifier's."""
        if not self.config.roi:
            return roi_map(x, self.config.top_k, self.config.centre)
        m = load_image(self.config.roi, alpha="drop")
        m = m.mean(axis=2) if m.ndim == 3 else m
        if m.shape != x.shape[:2]:
            raise ValueError(f"roi image is {m.shape[1]}x{m.shape[0]}, the image {x.shape[1]}x{x.shape[0]}")
        return (m / 255.0).astype(np.float32)

    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        target = self.config.target_bytes or len(self.host().encode_chunks(x)[0])
        m = self.importance(x)
        if self.config.mode == "blend":
            x = _blend(self, x, m)
            floor = None
        else:
            floor = float(self.config.floor)
        dct = DCTImage(x, m)
        return [rate_controlled(lambda q, trim: dct.jpeg(q, floor, trim), target)]

    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        return self.host_decode(chunks, shape[0], shape[1])


def _blend(codec: Prakash2017, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The paper's method: the image decoded from JPEGs of a low and a high quality, blended per pixel by the
    map (high where it is 1); the blend is then coded as one JPEG."""
    q = codec.config.quality
    lo, hi = max(1, q // 2), min(100, q + (100 - q) // 2)
    h, w, c = x.shape
    low, high = (codec.host_decode(codec.host_encode(x, v), h, w, c, v).astype(np.float64) for v in (lo, hi))
    return np.clip(np.round(m[..., None] * high + (1 - m[..., None]) * low), 0, 255).astype(np.uint8)


def _roi_arguments(p) -> None:
    p.add_argument("input", help="an image")
    p.add_argument("output", help="its region-of-interest map as a grayscale PNG (white: important)")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT")
    config = Prakash2017.Config()
    p.add_argument("--top-k", type=int, default=config.top_k, help=f"classes the map covers (default {config.top_k})")
    p.add_argument("--centre", type=float, default=config.centre,
                   help=f"weight of the centre prior mixed in, 0-1 (default {config.centre}, as the codec)")


def _cmd_roi(args) -> None:
    x = load_image(args.input, alpha="flatten")
    codec = create_codec("prakash2017", top_k=args.top_k, centre=args.centre)
    m = codec.importance(np.repeat(x[:, :, None], 3, axis=2) if x.ndim == 2 else x)
    save_image(args.output, np.round(m * 255).astype(np.uint8), force=args.force)


Prakash2017.commands = (Command("roi", "the region-of-interest map prakash2017 codes by (Prakash et al. 2017)",
                                _roi_arguments, _cmd_roi),)
