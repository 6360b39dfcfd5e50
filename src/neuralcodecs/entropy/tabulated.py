"""Real entropy coding of latents with a learned per-channel density, whatever that density is.

A subclass of `TabulatedDensity` models each latent channel with a continuous density; this module does
everything else. The probability of a quantized value is the mass of its unit bin,
p(y_hat) = P(y_hat - 1/2 < x < y_hat + 1/2); in training, uniform noise replaces rounding
(y_tilde = y + u, u ~ U(-1/2, 1/2)) so the rate is differentiable, and the same bin mass is its likelihood.

Data flow (one channel):

    training:  y -> y + u ---------------------------> bits = -log2 p (per value)
    coding:    y -> s = round(y - m) -> table[s] -> range coder -> bytes -> s -> y_hat = s + m

Quantization is relative to the channel's median m: the grid of y_hat is centred on the mode of a unimodal
density, which costs fewer bits than the integer grid when the density is not centred on an integer (and
is the same grid when it is). m is stored as a fixed-point integer (multiple of 2^-8), so y_hat = s + m is
exact in float32 and no dtype cast of the module can change it.

The coding tables are integers (16-bit precision) stored as buffers, so encoder and decoder agree bit for
bit on any machine: they are saved with the `state_dict` and loaded from it. `update_tables()` builds
them; the training loop calls it when training ends, loading a state dict that has none builds them, and
`compress` builds them if they were never built. Values outside a channel's table range are coded as an
escape symbol followed by the value itself (sign, bit length, bits), so any value round-trips exactly.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import BitstreamError
from .coder import Decoder, Encoder, pmf_from_counts
from .model import EntropyModel, bits_of

PRECISION = 16                # integer table counts sum to about 2**PRECISION
MEDIAN_BITS = 8               # medians are stored as integers in units of 2**-MEDIAN_BITS
MAX_OFFSET = 8191             # a table spans at most [-MAX_OFFSET, MAX_OFFSET] around the median
_ESCAPE_LENGTHS = 64          # bit length of an escaped magnitude: uniform over [0, 64)
_MAX_ESCAPE_BITS = 62         # escaped magnitudes below 2**62 (int64 arithmetic stays exact)
_UNIFORM_BIT = np.array([0.5, 0.5])
_UNIFORM_LENGTH = np.full(_ESCAPE_LENGTHS, 1.0 / _ESCAPE_LENGTHS)


class TabulatedDensity(EntropyModel):
    """Learned per-channel density of a latent y (NCHW) with real entropy coding.

    forward(y) -> (y_tilde, bits): y + uniform noise in training, the coded values in eval mode, and the
    bits of each value. Train with loss = lmbda * distortion + bits.sum() + aux_loss(); call
    `update_tables()` when training ends. `compress(y)` / `decompress(data, shape)` code for real.

    A subclass defines its density through three methods, all per channel (C = `channels`):

      bin_mass(v, detach=False) -> Tensor
          P(v - 1/2 < x < v + 1/2) for v of shape (C, 1, M), in v's dtype and on v's device (move the
          parameters there), detached from them if `detach`. Must not cancel in the tails: far from the
          median the mass is tiny but must stay positive.
      _tail_mass(below, above) -> Tensor
          P(x < below) + P(x > above) for float64 CPU tensors of shape (C,): the escape symbol's mass.
      _quantiles() -> Tensor
          (C, 3) float64 on the CPU, no gradient: the tail_mass/2, 1/2 and 1 - tail_mass/2 quantiles of
          the density (estimates are enough). The median becomes the quantization offset, the outer two
          bound the range of values the tables code without an escape.

    A density whose quantiles need training overrides `aux_loss` and `aux_parameters` as well.
    """

    def __init__(self, channels: int, tail_mass: float = 1e-9):
        super().__init__()
        if channels < 1 or not 0 < tail_mass < 1:
            raise ValueError(f"{type(self).__name__} needs channels >= 1 and 0 < tail_mass < 1")
        self.channels = channels
        self.tail_mass = float(tail_mass)
        # Coding tables (see update_tables); empty (sizes 0) until built.
        # every channel's counts one after another (table_sizes[c] of them each): the widths differ widely, so a
        # (channels x widest) array would be mostly padding (README: "Why the constants are what they are")
        self.register_buffer("table_counts", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("table_offsets", torch.zeros(channels, dtype=torch.int32))
        self.register_buffer("table_sizes", torch.zeros(channels, dtype=torch.int32))
        self.register_buffer("table_medians", torch.zeros(channels, dtype=torch.int32))
        self._costs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # costs(), from the tables
        self.register_load_state_dict_pre_hook(_resize_tables)
        self.register_load_state_dict_post_hook(_build_missing_tables)

    # -- what the density provides (see the class docstring) ----------------------------------------
    def bin_mass(self, v: Tensor, detach: bool = False) -> Tensor:
        raise NotImplementedError

    def _tail_mass(self, below: Tensor, above: Tensor) -> Tensor:
        raise NotImplementedError

    def _quantiles(self) -> Tensor:
        raise NotImplementedError

    def aux_loss(self) -> Tensor:
        """A loss that trains only `aux_parameters()`; none by default."""
        return torch.zeros((), device=self.table_medians.device)

    def aux_parameters(self) -> list[nn.Parameter]:
        """Parameters trained only by `aux_loss` (none by default)."""
        return []

    # -- the model --------------------------------------------------------------------------------
    def bits(self, y_hat: Tensor) -> Tensor:
        """-log2 of the probability mass of the unit bin around each value of y_hat (NCHW)."""
        n, c, h, w = y_hat.shape
        v = y_hat.float().transpose(0, 1).reshape(c, 1, -1)
        return bits_of(self.bin_mass(v).reshape(c, n, h, w).transpose(0, 1))

    def quantization_offset(self) -> Tensor:
        """Each channel's median now, float32 (C,) on the module's device: training rounds around it as
        coding rounds around the stored medians, so a decoder trains on the grid it will decode."""
        return self._quantiles()[:, 1].to(self.table_medians.device, torch.float32)

    @property
    def medians(self) -> Tensor:
        """The per-channel medians used for quantization (from the tables), float32, shape (C,)."""
        return self.table_medians.float() / 2 ** MEDIAN_BITS

    def quantize(self, y: Tensor) -> Tensor:
        """round(y - m) + m with the stored medians m (float32): what `decompress(compress(y))` returns."""
        m = self.medians.to(y.device).view(1, -1, 1, 1)
        return torch.round(y.float() - m) + m

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """y (NCHW) -> (y_tilde, bits), both float32.

        Training: y_tilde = y + U(-1/2, 1/2). Eval: y_tilde = round(y - m) + m with the stored medians
        m, exactly what `decompress(compress(y))` returns once the tables are up to date.
        """
        self._check(y)
        # float32 also under autocast: bfloat16 cannot even represent y + u for |y| > 128, and the
        # tail probabilities need the precision.
        with torch.autocast(device_type=y.device.type, enabled=False):
            y = y.float()
            y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else self.quantize(y)
            return y_tilde, self.bits(y_tilde)

    # -- coding tables ----------------------------------------------------------------------------
    @torch.no_grad()
    def update_tables(self) -> None:
        """Build the integer coding tables from the current density (call when training ends).

        Per channel, with m the median rounded to a multiple of 2^-8: the offsets k in
        [floor(q_low - m), ceil(q_high - m)] (always containing 0, clipped to +-MAX_OFFSET), the bin mass
        of each m + k, and one last escape symbol holding the mass of both tails. Computed in float64 on
        the CPU, then rounded to integer counts of 2^PRECISION, each at least 1 so every symbol is codable.
        """
        q = self._quantiles()
        if not bool(torch.isfinite(q).all()):
            raise ValueError("cannot build coding tables: the density's quantiles are not finite")
        medians = torch.round(q[:, 1] * 2 ** MEDIAN_BITS)
        m = medians / 2 ** MEDIAN_BITS
        lo = torch.clamp(torch.floor(q[:, 0] - m), -MAX_OFFSET, 0)
        hi = torch.clamp(torch.ceil(q[:, 2] - m), 0, MAX_OFFSET)
        n = (hi - lo + 1).long()  # in-range symbols per channel; the escape comes after them
        k = lo[:, None] + torch.arange(int(n.max()), dtype=torch.float64)
        v = (m[:, None] + k)[:, None, :]

        # Everything below runs on the CPU in float64 (the density moves its parameters to v).
        mass = self.bin_mass(v, detach=True)[:, 0, :]
        tail = self._tail_mass(m + lo - 0.5, m + hi + 0.5)

        probs = torch.zeros(self.channels, int(n.max()) + 1, dtype=torch.float64)
        for c in range(self.channels):
            probs[c, :n[c]] = mass[c, :n[c]]
            probs[c, n[c]] = tail[c]
        counts = np.maximum(np.rint(probs.numpy() * 2 ** PRECISION), 1).astype(np.int32)
        sizes = (n + 1).numpy()

        device = self.table_counts.device
        self.table_counts = torch.from_numpy(np.concatenate([counts[c, :sizes[c]] for c in range(self.channels)])).to(device)
        self.table_offsets = lo.to(torch.int32).to(device)
        self.table_sizes = torch.from_numpy(sizes.astype(np.int32)).to(device)
        self.table_medians = medians.to(torch.int32).to(device)
        self._costs = None

    def tables(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """(per-channel integer counts, offsets, sizes, float32 medians) as CPU arrays; builds if missing."""
        if bool((self.table_sizes == 0).any()):
            self.update_tables()
        sizes = self.table_sizes.cpu().numpy().astype(np.int64)
        counts = self.table_counts.cpu().numpy()
        if counts.shape != (sizes.sum(),):
            raise ValueError(f"coding tables of {counts.shape} counts where the sizes say {sizes.sum()}")
        return (np.split(counts, np.cumsum(sizes)[:-1]),
                self.table_offsets.cpu().numpy().astype(np.int64), sizes, self.medians.cpu().numpy())

    # -- coding -----------------------------------------------------------------------------------
    def _check(self, y: Tensor) -> None:
        if y.dim() != 4 or y.shape[1] != self.channels:
            raise ValueError(f"expected NCHW with {self.channels} channels, got shape {tuple(y.shape)}")

    def symbols(self, y: Tensor, medians: np.ndarray) -> np.ndarray:
        """round(y - m) per channel as int64, shape (C, N*H*W); same float32 arithmetic as forward()."""
        self._check(y)
        return channel_symbols(y, medians)

    def check_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        n, c, h, w = (int(d) for d in shape)
        if c != self.channels or min(n, h, w) < 0:
            raise ValueError(f"shape {tuple(shape)} does not fit a density with {self.channels} channels")
        return n, c, h, w

    def compress(self, y: Tensor) -> bytes:
        """Entropy-code round(y - m) of y (NCHW, any N); `decompress` needs the same shape."""
        enc = Encoder()
        self.encode(enc, y)
        return enc.to_bytes()

    def encode(self, enc: Encoder, y: Tensor) -> None:
        """compress() into an encoder that may hold other symbols before and after."""
        counts, offsets, _, medians = self.tables()
        encode_channels(enc, self.symbols(y, medians), counts, offsets)

    def decompress(self, data: bytes, shape: Sequence[int]) -> Tensor:
        """bytes from `compress` and the latent shape (N, C, H, W) -> y_hat, float32 on the module's device."""
        return self.decode(Decoder(data), shape)

    def decode(self, dec: Decoder, shape: Sequence[int]) -> Tensor:
        """What encode() coded, read from a decoder at that point of its string."""
        shape = self.check_shape(shape)
        counts, offsets, _, medians = self.tables()
        return decode_channels(dec, shape, counts, offsets, medians).to(self.table_medians.device)

    def estimate_bits(self, y: Tensor) -> float:
        """Bits the tables assign to round(y - m), escapes included: what `compress` should produce."""
        _, offsets, _, medians = self.tables()
        return float(channel_bits(self.symbols(y, medians), self.costs(), offsets).sum())

    def costs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """channel_costs of the tables, built on first use and again after the tables change (update_tables,
        load_state_dict)."""
        if self._costs is None:
            self._costs = channel_costs(self.tables()[0])
        return self._costs


# -- coding channels, each with its own table (a density's own, or tables chosen per channel) -------------------

def channel_symbols(y: Tensor, medians: np.ndarray) -> np.ndarray:
    """round(y - m) of y (NCHW) with channel c's median m = medians[c], as int64 of shape (C, N*H*W)."""
    y = y.detach().to("cpu", torch.float32)
    n, c = y.shape[:2]
    s = symbols(y - torch.from_numpy(np.asarray(medians, dtype=np.float32)).view(1, -1, 1, 1))
    return s.reshape(n, c, -1).transpose(1, 0, 2).reshape(c, -1)


def encode_channels(enc: Encoder, s: np.ndarray, counts: Sequence[np.ndarray], offsets: np.ndarray) -> None:
    """Code row c of the symbols s (C, n) with table c (its integer counts and first offset)."""
    for c in range(len(s)):
        encode_table(enc, s[c], int(offsets[c]), pmf_from_counts(counts[c]))


def decode_channels(dec: Decoder, shape: Sequence[int], counts: Sequence[np.ndarray], offsets: np.ndarray,
                    medians: np.ndarray) -> Tensor:
    """What encode_channels coded, back as y_hat = s + m of `shape` (N, C, H, W), float32 on the CPU."""
    n, c, h, w = shape
    s = np.empty((c, n * h * w), dtype=np.int64)
    for i in range(c):
        s[i] = decode_table(dec, n * h * w, int(offsets[i]), pmf_from_counts(counts[i]))
    # Every symbol came from a float32 value, so the conversion back is exact.
    y_hat = torch.from_numpy(s).to(torch.float32).reshape(c, n, h, w).transpose(0, 1)
    return (y_hat + torch.from_numpy(np.asarray(medians, dtype=np.float32)).view(1, -1, 1, 1)).contiguous()


def channel_costs(counts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What channel_bits looks up, from the per-channel tables' integer counts: (C, W) the bits of each in-range
    symbol (channel c's n[c] of them from column 0; W the widest n), (C,) the bits of the escape symbol, and
    (C,) n. Built once per set of tables: an encoder that weighs many tables (forward adaptation) would
    otherwise normalize every table and take every log again for each image."""
    n = np.array([len(k) - 1 for k in counts], dtype=np.int64)
    table, escape = np.zeros((len(counts), int(n.max(initial=1)))), np.empty(len(counts))
    for c, k in enumerate(counts):
        bits = -np.log2(pmf_from_counts(k))
        table[c, :n[c]], escape[c] = bits[:-1], bits[-1]
    return table, escape, n


def channel_bits(s: np.ndarray, costs: tuple[np.ndarray, np.ndarray, np.ndarray], offsets: np.ndarray) -> np.ndarray:
    """The bits encode_channels spends on each row of s (C, n), (C,) float64, given channel_costs of its tables:
    symbol_bits' values, looked up for all channels at once."""
    table, escape, n = costs
    i = s - offsets[:, None]
    out = (i < 0) | (i >= n[:, None])
    bits = np.take_along_axis(table, np.clip(i, 0, table.shape[1] - 1), axis=1)
    for c in np.flatnonzero(out.any(axis=1)):
        lo = int(offsets[c])
        bits[c, out[c]] = escape[c] + _escape_bits(s[c, out[c]], lo, lo + int(n[c]) - 1)
    return bits.sum(axis=1)


# -- coding integers with a table and an escape (here and in the conditionals, conditional.py) ------
# A table's pmf covers [lo, lo + len(pmf) - 2] and its last entry is the escape symbol; values outside the
# range take it and are then coded exactly (below).

def symbols(v: Tensor) -> np.ndarray:
    """round(v) as int64 (flat), refusing what the escape code cannot hold: non-finite values, |v| >= 2**61."""
    s = torch.round(v.detach().to("cpu", torch.float32)).reshape(-1)
    if s.numel() and (not bool(torch.isfinite(s).all()) or float(s.abs().max()) >= 2.0 ** (_MAX_ESCAPE_BITS - 1)):
        raise ValueError("cannot code latents that are not finite or have magnitude >= 2**61")
    return s.numpy().astype(np.int64)


def encode_table(enc: Encoder, s: np.ndarray, lo: int, pmf: np.ndarray) -> None:
    hi = lo + len(pmf) - 2
    escape = (s < lo) | (s > hi)
    enc.categorical(np.where(escape, len(pmf) - 1, s - lo), pmf)
    if escape.any():
        _encode_escapes(enc, s[escape], lo, hi)


def decode_table(dec: Decoder, n: int, lo: int, pmf: np.ndarray) -> np.ndarray:
    hi = lo + len(pmf) - 2
    s = dec.categorical(n, pmf).astype(np.int64) + lo
    escape = s == hi + 1
    if escape.any():
        s[escape] = _decode_escapes(dec, int(escape.sum()), lo, hi)
    return s


def table_bits(s: np.ndarray, lo: int, pmf: np.ndarray) -> float:
    """The bits encode_table spends on s (the information content under the table, escapes included)."""
    return float(symbol_bits(s, lo, pmf).sum())


def symbol_bits(s: np.ndarray, lo: int, pmf: np.ndarray) -> np.ndarray:
    """The bits encode_table spends on each value of s, float64 of s's shape."""
    hi = lo + len(pmf) - 2
    escape = (s < lo) | (s > hi)
    bits = -np.log2(pmf[np.where(escape, len(pmf) - 1, s - lo)])
    if escape.any():
        bits[escape] += _escape_bits(s[escape], lo, hi)
    return bits


# -- escapes: values outside a table's range [lo, hi] ------------------------------------------------
# An escaped value s is coded as a side bit (above hi or below lo), then v = distance beyond the range + 1
# (>= 1) as its bit length with a uniform 6-bit code and its bits below the leading one, one bit plane per
# call so a channel's escapes are coded in a few vectorized calls. Exact for any |s| < 2**61.

def _escape_magnitudes(s: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    above = s > hi
    v = np.where(above, s - hi, lo - s)  # distance beyond the range + 1, >= 1
    _, lengths = np.frexp(v.astype(np.float64))  # v < 2**lengths
    # float64 rounds v > 2**53 to nearest, possibly up to the next power of two: fix with an exact shift.
    lengths = lengths.astype(np.int64)
    lengths -= (v >> (lengths - 1)) == 0
    return above.astype(np.int64), v, lengths


def _escape_bits(s: np.ndarray, lo: int, hi: int) -> np.ndarray:
    _, _, lengths = _escape_magnitudes(s, lo, hi)
    return 1 + math.log2(_ESCAPE_LENGTHS) + (lengths - 1)


def _encode_escapes(enc: Encoder, s: np.ndarray, lo: int, hi: int) -> None:
    above, v, lengths = _escape_magnitudes(s, lo, hi)
    enc.categorical(above, _UNIFORM_BIT)
    enc.categorical(lengths, _UNIFORM_LENGTH)
    for b in range(int(lengths.max()) - 1):  # bit planes below the leading one
        has = lengths - 1 > b
        enc.categorical((v[has] >> b) & 1, _UNIFORM_BIT)


def _decode_escapes(dec: Decoder, count: int, lo: int, hi: int) -> np.ndarray:
    above = dec.categorical(count, _UNIFORM_BIT).astype(bool)
    lengths = dec.categorical(count, _UNIFORM_LENGTH).astype(np.int64)
    if lengths.min() < 1 or lengths.max() > _MAX_ESCAPE_BITS:
        raise BitstreamError("corrupted entropy-coded data (impossible escaped value)")
    v = np.left_shift(np.int64(1), lengths - 1)
    for b in range(int(lengths.max()) - 1):
        has = lengths - 1 > b
        v[has] |= dec.categorical(int(has.sum()), _UNIFORM_BIT).astype(np.int64) << b
    return np.where(above, hi + v, lo - v)


# -- state_dict hooks: tables travel with the weights ------------------------------------------------

def _resize_tables(module: TabulatedDensity, state_dict: dict, prefix: str, *args) -> None:
    # A table's length depends on the trained density: make ours the stored shape so it can load.
    # Weights saved without tables load too (also strictly): they get empty ones, built after loading.
    for name, empty in (("table_counts", torch.zeros(0, dtype=torch.int32)),
                        ("table_sizes", torch.zeros(module.channels, dtype=torch.int32))):
        state_dict.setdefault(prefix + name, empty)
    stored = state_dict[prefix + "table_counts"]
    if stored.dim() == 2:  # weights written before the tables were stored back to back: (channels x widest)
        sizes = state_dict[prefix + "table_sizes"].tolist()
        state_dict[prefix + "table_counts"] = torch.cat([stored[c, :n] for c, n in enumerate(sizes)])
    for name in ("table_offsets", "table_medians"):
        state_dict.setdefault(prefix + name, torch.zeros(module.channels, dtype=torch.int32))
    module.table_counts = torch.zeros_like(state_dict[prefix + "table_counts"], dtype=torch.int32,
                                           device=module.table_counts.device)


def _build_missing_tables(module: TabulatedDensity, incompatible_keys) -> None:
    # Weights saved before update_tables() (or without tables) get tables built from their density; the costs
    # of the tables loaded before are stale.
    module._costs = None
    if bool((module.table_sizes == 0).any()):
        module.update_tables()
