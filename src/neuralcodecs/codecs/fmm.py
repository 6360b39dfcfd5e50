"""Five Modulus Method (FMM).

Paper: F. A. Jassim, "Five Modulus Method for Image Compression", Signal & Image Processing (SIPIJ) 3(5), 2012.

    x (uint8, per RGB channel, in 8x8 blocks) -> q = round(x / 5) in 0..51 -> 6 bits per value
    -> [fmm] packed as they are            | [fmm-entropy] plane prediction + range coding (lossless)
    decode: x_hat = 5 q

Values near 255: 255 = 51 * 5 is itself a multiple of five, so rounding x / 5 never leaves 0..51 and
never needs clipping (253 and 254 round to 51 -> 255; 0..2 round to 0). x / 5 never has a fractional
part of exactly .5, so the rounding is unambiguous; the reconstruction error is at most 2 levels.

The image is padded to whole 8x8 blocks (edge replication) and `fmm` writes each block of each channel in
raster order, 64 values of 6 bits = 48 bytes per block: exactly 18 bpp for RGB. `fmm-entropy` codes the
same 6-bit values losslessly: each value is predicted from its left, upper and upper-left neighbours
(the plane predictor a + b - c, whose inverse is a 2-D cumulative sum, so decoding is vectorized), the
residual taken modulo 52 and range-coded with a per-channel histogram stored in the file.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..codec import Codec
from ..entropy.coder import Decoder, Encoder, pmf_from_counts
from ..errors import BitstreamError
from ..registry import register

M = 5  # the modulus
LEVELS = 255 // M + 1  # 52 values: 0..51, 6 bits


def _blocks(q: np.ndarray) -> np.ndarray:
    """HxWxC -> (C, H/8, W/8, 8, 8): the raster order of 8x8 blocks per channel that `fmm` stores."""
    h, w, c = q.shape
    return q.transpose(2, 0, 1).reshape(c, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4)


def _pack6(v: np.ndarray) -> bytes:
    """Pack values < 64 four to three bytes."""
    v = v.astype(np.uint32).ravel()
    v = np.concatenate([v, np.zeros(-len(v) % 4, np.uint32)]).reshape(-1, 4)
    word = (v[:, 0] << 18) | (v[:, 1] << 12) | (v[:, 2] << 6) | v[:, 3]
    return np.stack([word >> 16, (word >> 8) & 255, word & 255], 1).astype(np.uint8).tobytes()


def _unpack6(data: bytes, n: int) -> np.ndarray:
    if len(data) != 3 * (-(-n // 4)):
        raise BitstreamError(f"corrupted fmm data: {len(data)} bytes for {n} values")
    b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.uint32)
    word = (b[:, 0] << 16) | (b[:, 1] << 8) | b[:, 2]
    v = np.stack([word >> 18, (word >> 12) & 63, (word >> 6) & 63, word & 63], 1).ravel()[:n]
    if v.max(initial=0) >= LEVELS:
        raise BitstreamError("corrupted fmm data: a value above 51")
    return v.astype(np.uint8)


@register("fmm-entropy", entropy=True)
@register("fmm", entropy=False)
class FMM(Codec):
    __doc__ = __doc__  # the module's: the paper and the data flow, for help()
    quality_meaning = "the modulus (the method defines one rate point)"
    @dataclass(frozen=True)
    class Config:
        quality: int = M  # the modulus; the method defines one rate point
        entropy: bool = False

        def __post_init__(self):
            if self.quality != M:
                raise ValueError(f"fmm has one rate point, quality={M} (the modulus), got {self.quality!r}")

    qualities: ClassVar[tuple] = (M,)
    pad_to = 8

    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        q = ((x.astype(np.int32) * 2 + M) // (2 * M)).astype(np.uint8)  # round(x/5) in integers
        if not self.config.entropy:
            return [_pack6(_blocks(q))]
        enc, counts = Encoder(), []
        for c in range(q.shape[2]):
            r = _plane_residual(q[:, :, c])
            n = np.bincount(r.ravel(), minlength=LEVELS)
            counts.append(n)
            enc.categorical(r, pmf_from_counts(n))
        table = np.stack(counts).astype(">u4").tobytes()
        return [struct.pack(">H", len(counts)) + table + enc.to_bytes()]

    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        h, w, c = shape
        if not self.config.entropy:
            v = _unpack6(chunks[0], h * w * c).reshape(c, h // 8, w // 8, 8, 8)
            q = v.transpose(0, 1, 3, 2, 4).reshape(c, h, w).transpose(1, 2, 0)
        else:
            data = chunks[0]
            (nc,) = struct.unpack(">H", data[:2])
            if nc != c or len(data) < 2 + 4 * LEVELS * c:
                raise BitstreamError("corrupted fmm-entropy data: bad histogram table")
            counts = np.frombuffer(data[2:2 + 4 * LEVELS * c], ">u4").reshape(c, LEVELS).astype(np.int64)
            if (counts.sum(axis=1) != h * w).any():
                raise BitstreamError("corrupted fmm-entropy data: histogram does not match the image size")
            dec = Decoder(data[2 + 4 * LEVELS * c:])
            q = np.stack([_plane_inverse(dec.categorical(h * w, pmf_from_counts(counts[i])).reshape(h, w))
                          for i in range(c)], axis=2)
        return (q.astype(np.uint16) * M).astype(np.uint8)


def _plane_residual(q: np.ndarray) -> np.ndarray:
    """r = q - (left + up - upleft) mod 52, with zeros outside the image: a second difference."""
    p = np.pad(q.astype(np.int32), ((1, 0), (1, 0)))
    d = p[1:, 1:] - p[1:, :-1] - p[:-1, 1:] + p[:-1, :-1]
    return np.mod(d, LEVELS)


def _plane_inverse(r: np.ndarray) -> np.ndarray:
    """Inverse of _plane_residual: a 2-D cumulative sum, modulo 52."""
    return np.mod(np.cumsum(np.cumsum(r.astype(np.int64), axis=0), axis=1), LEVELS).astype(np.uint8)
