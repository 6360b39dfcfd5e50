"""Distortion and rate on 8-bit images, the way papers measure them.

PSNR on RGB (mean squared error over all channels), SSIM and MS-SSIM from pytorch-msssim (Gaussian
window 11, sigma 1.5, data range 255, RGB averaged), PSNR-HVS and PSNR-HVS-M from psnr-hvsm on the
BT.601 luma (the metrics are defined on one channel, over whole 8x8 blocks), bpp from the real file size.
"""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np

from ..image import as_image

MS_SSIM_MIN_SIDE = 161  # 4 downsamplings of an 11-tap window need a short side > 160


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_image(a), as_image(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a, b


def mse(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _pair(a, b)
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all channels (RGB PSNR); inf for identical images."""
    m = mse(a, b)
    return math.inf if m == 0 else 10 * math.log10(255.0 ** 2 / m)


def _tensors(a, b):
    import torch

    a, b = _pair(a, b)
    # float32 (SSIM of 8-bit data needs no more; README); torch.tensor copies, so read-only arrays are fine
    return tuple(torch.tensor(v, dtype=torch.float32).permute(2, 0, 1)[None] for v in (a, b))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from pytorch_msssim import ssim as _ssim

    ta, tb = _tensors(a, b)
    if min(ta.shape[-2:]) < 11:
        return math.nan
    return float(_ssim(ta, tb, data_range=255, size_average=True))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (5 scales); NaN for images whose short side is under 161 pixels, where it is undefined."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    ta, tb = _tensors(a, b)
    if min(ta.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return math.nan
    return float(_ms_ssim(ta, tb, data_range=255, size_average=True))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM as -10 log10(1 - MS-SSIM), the scale papers plot it on."""
    return math.inf if value >= 1 else -10 * math.log10(1 - value)


def ms_ssim_from_db(db: float) -> float:
    """The inverse of ms_ssim_db: MS-SSIM from -10 log10(1 - MS-SSIM)."""
    return 1 - 10 ** (-float(db) / 10)


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma in [0, 1] (float64); gray images are returned as they are."""
    x = as_image(image).astype(np.float64) / 255.0
    if x.shape[2] == 1:
        return x[:, :, 0]
    return 0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]


def psnr_hvs(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(PSNR-HVS, PSNR-HVS-M) in dB on full-range BT.601 luma (`luma`, as PSNR is on full-range pixels), from
    psnr-hvsm; NaN below one 8x8 block. The TID2013 reference pipeline takes limited-range (16-235) luma, whose
    errors are 219/255 as large: it reads 0.4-1.3 dB higher on the same images (kodim23 through jpeg q20-80)."""
    a, b = _pair(a, b)
    h, w = (a.shape[0] // 8) * 8, (a.shape[1] // 8) * 8  # the metric is defined on whole 8x8 blocks
    if h == 0 or w == 0:
        return math.nan, math.nan
    if np.array_equal(a[:h, :w], b[:h, :w]):
        return math.inf, math.inf
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a note about its torch backend on import
        from psnr_hvsm import psnr_hvs_hvsm
    with np.errstate(invalid="ignore", divide="ignore"):  # its np.where evaluates 0/0 on flat blocks, then discards it
        hvs, hvsm = psnr_hvs_hvsm(luma(a[:h, :w]), luma(b[:h, :w]))
    return float(hvs), float(hvsm)


def weighted_psnr(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> float:
    """PSNR of a weighted mean squared error: weights (HxW, >= 0) say where errors count, e.g. a fixation
    density (where people look); uniform weights give the plain PSNR."""
    a, b = _pair(a, b)
    err = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=2)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != err.shape or not (w >= 0).all() or not w.sum() > 0:
        raise ValueError(f"weights must be an {err.shape[0]}x{err.shape[1]} map of values >= 0, not all 0")
    value = float((err * w).sum() / w.sum())
    return float("inf") if value == 0 else 10 * math.log10(255 ** 2 / value)


def fixation_density(points: np.ndarray, height: int, width: int, sigma: float) -> np.ndarray:
    """A fixation density map (HxW, sums to 1): each fixation (row, column; 0-based pixels) a Gaussian of
    `sigma` pixels, the usual ground truth of saliency benchmarks."""
    density = np.zeros((height, width))
    pts = np.round(np.asarray(points, dtype=np.float64)).astype(int)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < height) & (pts[:, 1] >= 0) & (pts[:, 1] < width)
    np.add.at(density, (pts[inside, 0], pts[inside, 1]), 1.0)
    radius = int(3 * sigma) + 1
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    # separable blur, zero outside the image (a fixation near the border spreads less mass inside); the full
    # convolution cut to the row's own span, so the map keeps the image's shape even where the kernel is longer
    def blur(r: np.ndarray) -> np.ndarray:
        return np.convolve(r, k, mode="full")[radius:radius + len(r)]

    density = np.apply_along_axis(blur, 1, np.apply_along_axis(blur, 0, density))
    return density / max(density.sum(), 1e-300)


def bpp(n_bytes: int, height: int, width: int) -> float:
    """Bits per pixel from the real size of the file in bytes."""
    return 8.0 * n_bytes / (height * width)


def all_metrics(original: np.ndarray, decoded: np.ndarray, n_bytes: int) -> dict[str, float]:
    """Every metric this library reports, keyed as in the published JSON curves."""
    h, w = original.shape[:2]
    hvs, hvsm = psnr_hvs(original, decoded)
    msssim = ms_ssim(original, decoded)
    return {
        "bpp": bpp(n_bytes, h, w),
        "psnr-rgb": psnr(original, decoded),
        "ssim-rgb": ssim(original, decoded),
        "ms-ssim-rgb": msssim,
        "ms-ssim-db": ms_ssim_db(msssim) if not math.isnan(msssim) else math.nan,
        "psnr-hvs": hvs,
        "psnr-hvs-m": hvsm,
    }
