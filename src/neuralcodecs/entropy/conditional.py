"""Conditionals: each latent value has its own scale (and mean), predicted by another network.

Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression with a scale hyperprior", ICLR 2018:
y_i ~ N(mu_i, sigma_i^2) convolved with U(-1/2, 1/2), so the mass of a quantization bin is

    p(y_hat) = F((y_hat - mu + 1/2) / sigma) - F((y_hat - mu - 1/2) / sigma)

with F the standard normal CDF (GaussianConditional). LogisticConditional (beyond the paper) puts a logistic of
the same standard deviation in its place: the values fall in its heavier tails often enough that the scale indexes
the hyperprior codecs' networks learned to predict for a Gaussian code them in fewer bytes (minnen2018 on Kodak:
1.2-1.5 % fewer at every rate point; README, "The conditional's shape"), with no retraining and the same pixels.

The coder cannot build a table per value, so sigma comes from a fixed table of LEVELS scales spaced
geometrically from SCALE_MIN to SCALE_MAX, and what decides a value's model is an integer index into it.
That index (and mu) must be the same number in encoder and decoder on any machine: the network that predicts
them computes them exactly (nn/integer.py); this module only turns indexes into tables and bits.

    training:  y -> y + u -------------------------------> bits (sigma from the real-valued index)
    coding:    y -> s = round(y - mu) -> table[index] -> range coder -> bytes -> s -> y_hat = s + mu

The tables are integer counts (16-bit precision), the same on every machine: the Gaussian's are stored in the
weights (a float64 erfc may differ in the last bit between machines, and a count on the edge of its rounding
would follow it), the logistic's are computed with a proof that their rounding is certain (logistic_tables).
Values beyond a table's range take the escape symbol and are coded exactly (tabulated.py's escape code).
"""
from __future__ import annotations

import decimal
import functools
import math
from decimal import Decimal
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.special import ndtri

from ..nn.bound import lower_bound
from .coder import Decoder, Encoder, pmf_from_counts
from .gsm import SCALE_BOUND, normal_cdf
from .model import EntropyModel, bits_of
from .tabulated import PRECISION, decode_table, encode_table, symbol_bits, symbols, table_bits

# the table starts at the scale below which a Gaussian's bins stop changing (gsm.SCALE_BOUND)
SCALE_MIN, SCALE_MAX, LEVELS = SCALE_BOUND, 256.0, 64
# log(SCALE_MAX / SCALE_MIN) / (LEVELS - 1), written out: decoders compute rate points' index shifts from it
# (latent.py), and a libm's log may differ in the last bit between machines
LOG_STEP = 0.12305479932808386
assert LEVELS <= 256  # ScaleConditional._groups sorts the indexes as bytes
TAIL_MASS = 1e-9


def scale_of(index: Tensor) -> Tensor:
    """The scale of a (real-valued, in training) index: SCALE_MIN * exp(index * LOG_STEP), index in [0, L-1]."""
    index = lower_bound(index, 0.0)
    index = -lower_bound(-index, -(LEVELS - 1.0))
    return SCALE_MIN * torch.exp(index * LOG_STEP)


def _gaussian_mass(v: Tensor, scale: Tensor) -> Tensor:
    """P(v - 1/2 < x < v + 1/2) for x ~ N(0, scale^2), by symmetry on -|v| where the CDF is precise."""
    v = v.abs()
    return normal_cdf((0.5 - v) / scale) - normal_cdf((-0.5 - v) / scale)


def _logistic_mass(v: Tensor, scale: Tensor) -> Tensor:
    """The same for a logistic of standard deviation `scale` (its own scale s = scale sqrt(3) / pi): on -|v|,
    F(b) - F(a) = e^a expm1(1/s) / ((1 + e^a)(1 + e^b)) with a = (-|v| - 1/2) / s, b = a + 1/s, which does not
    cancel where F(a) and F(b) are close (wide scales)."""
    s = scale * (math.sqrt(3.0) / math.pi)
    a = (-v.abs() - 0.5) / s
    return torch.exp(a) * torch.expm1(1.0 / s) / ((1.0 + torch.exp(a)) * (1.0 + torch.exp(a + 1.0 / s)))


def gaussian_tables() -> tuple[Tensor, Tensor]:
    """(counts int32, halves int32): level i codes the 2 half[i] + 1 symbols -half..half, then the escape; the
    levels back to back. Computed in float64 with erfc, which may differ in the last bit between machines:
    weights carry these tables (GaussianConditional)."""
    scales = SCALE_MIN * torch.exp(torch.arange(LEVELS, dtype=torch.float64) * LOG_STEP)
    z = float(-ndtri(torch.tensor(TAIL_MASS / 2, dtype=torch.float64)))
    half = torch.ceil(scales * z).long()
    tables = []
    for i in range(LEVELS):
        kk = torch.arange(-int(half[i]), int(half[i]) + 1, dtype=torch.float64)
        tail = 2 * normal_cdf(-(half[i] + 0.5) / scales[i])
        p = torch.cat([_gaussian_mass(kk, scales[i]), tail.view(1)])
        tables.append(torch.clamp(torch.round(p * 2 ** PRECISION), min=1).to(torch.int32))
    return torch.cat(tables), half.to(torch.int32)


_PI = "3.141592653589793238462643383279502884197"  # to 40 digits, for the decimal arithmetic below
_EDGE = 1e-6  # a count this near a rounding edge (in counts) is settled in exact decimal arithmetic


def _decimal_context() -> decimal.Context:
    """40 digits, rounding half to even, every field set here: a caller's own context (its traps, its exponent
    range) must not change, or stop, what the tables are."""
    return decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN, Emin=-999999, Emax=999999, capitals=1,
                           clamp=0, flags=[], traps=[decimal.InvalidOperation, decimal.DivisionByZero,
                                                     decimal.Overflow])


def logistic_levels() -> list[tuple[float, int]]:
    """Per level, the logistic's own scale s (its standard deviation times sqrt(3) / pi) and the half-width of
    its table (P(|x| > half) <= TAIL_MASS beyond s ln(2 / TAIL_MASS - 1)), from decimal arithmetic, whose exp,
    ln and sqrt are correctly rounded: the same on every machine."""
    with decimal.localcontext(_decimal_context()):
        to_s = Decimal(3).sqrt() / Decimal(_PI)
        reach = (Decimal(2) / Decimal(TAIL_MASS) - 1).ln()
        levels = []
        for i in range(LEVELS):
            s = Decimal(SCALE_MIN) * (Decimal(i) * Decimal(LOG_STEP)).exp() * to_s
            levels.append((float(s), int((s * reach).to_integral_value(rounding=decimal.ROUND_CEILING))))
    return levels


@functools.lru_cache(maxsize=1)
def logistic_tables() -> tuple[Tensor, Tensor]:
    """gaussian_tables' layout for logistics of the table's standard deviations, the same integers on every
    machine: the masses come from float64 exp/expm1 (a few ulps: < 1e-9 counts of error), and a count whose
    value lies within _EDGE of a rounding edge is computed again in 40-digit decimal arithmetic."""
    tables, levels = [], logistic_levels()
    for s, half in levels:
        v = np.arange(-half, half + 1, dtype=np.float64)
        a = (-np.abs(v) - 0.5) / s
        mass = np.exp(a) * np.expm1(1.0 / s) / ((1.0 + np.exp(a)) * (1.0 + np.exp(a + 1.0 / s)))
        x = -(half + 0.5) / s
        tail = 2.0 * np.exp(x) / (1.0 + np.exp(x))
        scaled = np.append(mass, tail) * 2.0 ** PRECISION
        counts = np.rint(scaled)
        for j in np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < _EDGE):
            counts[j] = _exact_count(s, float(v[j]) if j < len(v) else None, half)
        tables.append(np.maximum(counts, 1).astype(np.int32))
    return torch.from_numpy(np.concatenate(tables)), torch.tensor([h for _, h in levels], dtype=torch.int32)


def _exact_count(s: float, v: float | None, half: int) -> int:
    """round(mass * 2^PRECISION), half to even, in 40-digit decimal: bin v's mass, or the escape's (v None)."""
    with decimal.localcontext(_decimal_context()):
        s_d = Decimal(s)  # the float exactly

        def cdf(x: Decimal) -> Decimal:
            return 1 / (1 + (-x).exp())

        if v is None:
            p = 2 * cdf(-(Decimal(half) + Decimal("0.5")) / s_d)
        else:
            a = (-abs(Decimal(v)) - Decimal("0.5")) / s_d
            p = cdf(a + 1 / s_d) - cdf(a)
        return int((p * 2 ** PRECISION).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


class ScaleConditional(EntropyModel):
    """Codes y (any shape) given per-value integer scale indexes and means of the same shape. A subclass names its
    bin masses (`mass`, for training and the model's bits) and its coding tables (`table_counts`, `table_half`,
    registered by __init__)."""

    mass: Callable[[Tensor, Tensor], Tensor]  # (v, scale) -> P(v - 1/2 < x < v + 1/2) for a centred x

    def __init__(self, tables: tuple[Tensor, Tensor], persistent: bool):
        super().__init__()
        counts, half = tables
        self.register_buffer("table_counts", counts.clone(), persistent=persistent)
        self.register_buffer("table_half", half.clone(), persistent=persistent)
        # built on first use from the tables, and again after a state loads: the coding tables as probabilities
        # (_table) and symbol_bits' dense table of costs
        self._pmfs: list[tuple[np.ndarray, int]] | None = None
        self._costs: np.ndarray | None = None
        self.register_load_state_dict_post_hook(lambda module, _keys: module.__dict__.update(_pmfs=None, _costs=None))

    # -- training and the model's bits ----------------------------------------------------------------
    def forward(self, y: Tensor, index: Tensor, means: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(y_tilde, bits): y + U(-1/2, 1/2) in training, round(y - mu) + mu in eval mode; float32."""
        with torch.autocast(device_type=y.device.type, enabled=False):
            y, mu = y.float(), (means.float() if means is not None else torch.zeros_like(y, dtype=torch.float32))
            if self.training:
                y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            else:
                y_tilde = torch.round(y - mu) + mu
            return y_tilde, bits_of(self.mass(y_tilde - mu, scale_of(index.float())))

    # -- real coding ----------------------------------------------------------------------------------
    def _groups(self, index: Tensor):
        """Per table index present, the flat positions that use it, in raster order (the coding order)."""
        flat = index.detach().reshape(-1).cpu().numpy().astype(np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= LEVELS):
            raise ValueError(f"scale indexes must be in [0, {LEVELS})")
        order = np.argsort(flat.astype(np.uint8), kind="stable")  # LEVELS <= 256: numpy's radix sort, 10x faster
        bounds = np.searchsorted(flat[order], np.arange(LEVELS + 1))
        for i in range(LEVELS):
            if bounds[i] < bounds[i + 1]:
                yield i, order[bounds[i]:bounds[i + 1]]

    def _table(self, i: int) -> tuple[np.ndarray, int]:
        """Level i's probabilities (symbols -half..half, then the escape) and half."""
        if self._pmfs is None:
            counts, halves = self.table_counts.cpu().numpy(), self.table_half.cpu().numpy().astype(np.int64)
            starts = np.concatenate([[0], np.cumsum(2 * halves + 2)])
            self._pmfs = [(pmf_from_counts(counts[a:a + 2 * h + 2]), int(h)) for a, h in zip(starts, halves)]
        return self._pmfs[i]

    @staticmethod
    def _symbols(y: Tensor, means: Tensor | None) -> np.ndarray:
        y = y.detach().to("cpu", torch.float32)
        return symbols(y - means.detach().to("cpu", torch.float32) if means is not None else y)

    def compress(self, y: Tensor, index: Tensor, means: Tensor | None = None) -> bytes:
        enc = Encoder()
        self.encode(enc, y, index, means)
        return enc.to_bytes()

    def encode(self, enc: Encoder, y: Tensor, index: Tensor, means: Tensor | None = None) -> None:
        """compress() into an encoder that may hold other symbols before and after."""
        s = self._symbols(y, means)
        for i, pos in self._groups(index):
            pmf, half = self._table(i)
            encode_table(enc, s[pos], -half, pmf)

    def decompress(self, data: bytes, index: Tensor, means: Tensor | None = None) -> Tensor:
        """y_hat of index's shape, float32 on index's device: exactly forward()'s eval-mode y_tilde."""
        return self.decode(Decoder(data), index, means)

    def decode(self, dec: Decoder, index: Tensor, means: Tensor | None = None) -> Tensor:
        """What encode() coded, read from a decoder at that point of its string."""
        s = np.zeros(index.numel(), np.int64)
        for i, pos in self._groups(index):
            pmf, half = self._table(i)
            s[pos] = decode_table(dec, len(pos), -half, pmf)
        y_hat = torch.from_numpy(s).to(torch.float32).view(index.shape).to(index.device)
        return y_hat + means.float() if means is not None else y_hat

    def estimate_bits(self, y: Tensor, index: Tensor, means: Tensor | None = None) -> float:
        """Bits the tables give round(y - mu), escapes included: what compress() should produce."""
        s, bits = self._symbols(y, means), 0.0
        for i, pos in self._groups(index):
            pmf, half = self._table(i)
            bits += table_bits(s[pos], -half, pmf)
        return bits

    def symbol_bits(self, s: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The bits each symbol s = round(y - mu) costs with the table of its index (arrays of one shape, int64;
        indexes in [0, LEVELS)): one lookup in a dense (LEVELS x symbols) table of costs, built once, exact up to
        |s| = the widest table's half + 1 (beyond it, the cost of that boundary value: an encoder's estimate)."""
        if self._costs is None:
            w = int(self.table_half.max()) + 1
            k = np.arange(-w, w + 1)
            self._costs = np.stack([symbol_bits(k, -half, pmf) for pmf, half in map(self._table, range(LEVELS))])
        cols = self._costs.shape[1]
        w = (cols - 1) // 2
        flat = index.astype(np.intp, copy=False) * cols + (np.clip(s, -w, w) + w)
        return np.take(self._costs.ravel(), flat)  # twice as fast as a 2-d fancy index


class GaussianConditional(ScaleConditional):
    """The paper's conditional: a Gaussian per value. Its tables are part of the weights' state."""

    mass = staticmethod(_gaussian_mass)

    def __init__(self):
        super().__init__(gaussian_tables(), persistent=True)


class LogisticConditional(ScaleConditional):
    """A logistic per value, of the standard deviation the index names (beyond the papers). Its tables are exact
    on every machine (logistic_tables), so they are built here and not stored."""

    mass = staticmethod(_logistic_mass)

    def __init__(self):
        super().__init__(logistic_tables(), persistent=False)


# The names codecs' settings give them, in the order of the symbol a hyperprior codec's string starts with
# (entropy/latent.py: one bit, 0 the Gaussian, 1 the logistic): the order is part of the file format.
CONDITIONALS = ("gaussian", "logistic")


def check_conditional(value: object) -> None:
    """A conditional's name, checked before anything is built from it (codecs' Config, the latent codecs)."""
    if value not in CONDITIONALS:
        raise ValueError(f"conditional must be one of {', '.join(CONDITIONALS)}, got {value!r}")
