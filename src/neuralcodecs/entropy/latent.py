"""Latent codecs: interchangeable ways to code the latent y of a transform codec (the role of CompressAI's
latent_codecs). A transform codec is g_a, g_s, per-rate-point gains, and one of these:

    FactorizedLatentCodec    y coded with a learned per-channel density per rate point (Ballé et al. 2017);
                             with forward adaptation, per channel the cheapest of the points' tables
                             strings: [y] (forward adaptive: [the choices, then y])
    HyperpriorLatentCodec    side information z = h_a(|y|) coded first with a factorized density, then y with
                             a Gaussian (or a logistic) whose scales h_s(z_hat) predicts (Ballé et al. 2018); h_s
                             is an integer network so encoder and decoder agree bit for bit on any machine; with
                             forward adaptation, per channel a shift of the scale indexes
                             string: [conditional | z | shifts | y]
    CheckerboardLatentCodec  mean-scale hyperprior with a two-pass checkerboard context (Minnen et al. 2018,
                             He et al. 2021): z first; then the anchor half of y from the hyperprior alone; then
                             the other half with a context of the decoded anchors; all entropy parameters
                             from integer networks
                             string: [conditional | z | shifts | y anchors | y non-anchors]

Every latent codec takes y already multiplied by its rate point's gain, the rate point q and that point's
per-channel log-gains (N, C):

    forward(y, q, log_gain)                   -> (y_hat for the synthesis, {"y": bits, "z": bits, ...} per value)
                                                 q: one rate point index per sample
    compress(y, q, log_gain)                  -> list of byte strings (each becomes a chunk of the file)
    decompress(strings, shape, q, log_gain)   -> y_hat of `shape` (N, C, H, W), exactly the encoder's y_hat
    estimate_bits(y, q, log_gain)             -> the bits the strings should take (the information bound)

A factorized codec has a density per rate point and ignores the gains. A hyperprior is shared by all rate
points, and it would have to learn from z alone which point it codes (it did not: its scales coded y in more
bits than one constant scale per channel; README: "Why the constants are what they are"). It does not have to:
a gain g multiplies the scale of y by g, which shifts the scale index by log(g) / LOG_STEP. So h_a reads the
gain-free |y| / g, h_s predicts the gain-free index, and the rate point's shift is added (`_shift`), exactly,
in grid units.

In training the synthesis sees round(y) (around the model's quantization offset) with the gradient passed
straight through, and the rate sees y + uniform noise (Minnen & Singh 2020's mixed quantization).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import BitstreamError
from ..nn.integer import ACT_BITS, CLIP, IntegerNetwork, quantize_activation
from .conditional import (CONDITIONALS, LEVELS, LOG_STEP, GaussianConditional, LogisticConditional,
                          ScaleConditional, check_conditional)
from .coder import Decoder, Encoder, pmf_from_counts
from .model import EntropyModel, bits_of, entropy_models
from .tabulated import TabulatedDensity, channel_bits, channel_symbols, decode_channels, encode_channels, symbols

# Forward adaptation: a channel's choice k steps away from "as the model says" (another rate point's table,
# FactorizedLatentCodec; a shift of the scale indexes, HyperpriorLatentCodec) is coded with probability
# ~ 0.3^k (the ratio chosen for the factorized codecs on training photos, README; reused for the shifts), from
# integer weights 3^k * 10^(K - k), so that encoder and decoder build the same floats (coder.pmf_from_counts)
SHIFTS = 4  # a channel's scale indexes move by at most this many steps
GAIN_BITS = 16  # rate points' gains on a grid of 2^-16 where coding multiplies by them (CheckerboardLatentCodec)
_FLAG = np.array([0.5, 0.5])  # whether a string holds choices


def _distance_pmf(distance: np.ndarray) -> np.ndarray:
    """The pmf over symbols at these distances k (non-negative integers) from the model's own choice."""
    k = np.asarray(distance, dtype=np.int64)
    return pmf_from_counts(3 ** k * 10 ** (int(k.max()) - k))


def _write_choices(enc: Encoder, choice: np.ndarray | None, pmf: np.ndarray) -> None:
    """The flag (choices follow or not), then the choices (symbols of pmf), if any."""
    enc.categorical(np.array([choice is not None]), _FLAG)
    if choice is not None:
        enc.categorical(choice, pmf)


def _read_choices(dec: Decoder, n: int, pmf: np.ndarray) -> np.ndarray | None:
    """What _write_choices wrote: n symbols in [0, len(pmf)) (the alphabet bounds them), or None."""
    return dec.categorical(n, pmf).astype(np.int64) if dec.categorical(1, _FLAG)[0] else None


def _adapt(cost: np.ndarray, own: int, side: np.ndarray) -> tuple[np.ndarray | None, float]:
    """Per channel the cheapest option given the bits of each (options, C) and of its symbol (side), or None
    where choices cost more than they save against every channel taking option `own`; and the bits of the
    choices' code (the flag included)."""
    total = cost + side[:, None]
    if total.min(axis=0).sum() >= cost[own].sum():
        return None, 1.0
    choice = total.argmin(axis=0)
    return choice, 1.0 + float(side[choice].sum())


def _round_ste(y: Tensor, offset: Tensor | float = 0.0) -> Tensor:
    """round(y - offset) + offset, gradient straight through (exact values forward)."""
    return torch.round(y - offset) + offset + (y - y.detach())


class _BinMass(nn.Module):
    """density.bin_mass as a module's forward, so functional_call can run it on other (batched) parameters."""

    def __init__(self, density: TabulatedDensity):
        super().__init__()
        self.density = density

    def forward(self, v: Tensor) -> Tensor:
        return self.density.bin_mass(v)


def _per_point(priors: nn.ModuleList, y: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """Sample i of y (NCHW) under the density of its rate point q[i]: (y_hat, bits). Training: y_hat is round(y)
    around each point's quantization offset with the gradient passed straight through, the bits those of
    y + uniform noise. Eval: y rounded around the stored medians, as decoding gives it, and its bits. All points' densities run as ONE batched evaluation: each parameter is
    stacked over the points and gathered per sample, and the density's own bin mass runs on those batched
    parameters (torch.func.functional_call), so a step launches the operators of one density, not one per
    rate point in the batch."""
    with torch.autocast(device_type=y.device.type, enabled=False):
        y = y.float()
        b, c, h, w = y.shape
        first = priors[0]
        params = {f"density.{name}": torch.stack([dict(p.named_parameters())[name] for p in priors])[q]
                  for name, _ in first.named_parameters()}
        if first.training:
            y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            m = torch.stack([p.medians for p in priors]).to(y.device)[q].view(b, c, 1, 1)
            y_tilde = torch.round(y - m) + m
        mass = torch.func.functional_call(_BinMass(first), params, (y_tilde.reshape(b, c, 1, h * w),))
        bits = bits_of(mass).reshape(b, c, h, w)
        if not first.training:
            return y_tilde, bits
        offset = torch.stack([p.quantization_offset() for p in priors])[q].view(b, c, 1, 1)
        return _round_ste(y, offset), bits


class Coding(NamedTuple):
    """What a hyperprior's encoder codes y with (HyperpriorLatentCodec._coding)."""
    z: Tensor                   # the side information, before rounding
    index: Tensor               # y's scale indexes, int64, forward adaptation's shifts applied: what is coded
    grid: Tensor                # the same before rounding to the table and before forward adaptation's shifts
                                # (the rate point's added): grid integers (units of 2^-ACT_BITS), float64
    mu: Tensor | None           # y's means (None: zero-mean, a scale hyperprior)
    anchors: Tensor | None      # the values of the first pass (None: one pass)
    delta: np.ndarray | None    # forward adaptation's shifts (None: none written)
    shift_bits: float           # the bits of the shifts' code

    @property
    def predicted(self) -> Tensor:
        """The networks' scale indexes, real-valued: what the tables approximate (measurements only)."""
        return self.grid / 2 ** ACT_BITS


class LatentCodec(nn.Module):
    """Base: see the module docstring. `n_strings` is how many strings (chunks) compress() returns."""

    n_strings = 1
    legacy_strings: int | None = None  # how many strings files of an earlier layout hold (still decoded)

    def check_strings(self, strings: list[bytes]) -> None:
        if len(strings) not in (self.n_strings, self.legacy_strings):
            legacy = f" (its earlier files {self.legacy_strings})" if self.legacy_strings else ""
            raise BitstreamError(f"corrupted file: {len(strings)} chunks where this codec writes {self.n_strings}{legacy}")

    def entropy_models(self) -> list[EntropyModel]:
        return entropy_models(self)

    def update_tables(self, log_gain: Tensor) -> None:
        """Rebuild what coding reads and training does not (the entropy models' integer tables; in a subclass,
        anything else derived from the rate points' log-gains (points, C)), once, when training ends."""
        for m in self.entropy_models():
            m.update_tables()


class FactorizedLatentCodec(LatentCodec):
    """y coded channel by channel with one learned density per rate point (`priors[q]`).

    Forward adaptation (`forward_adaptive`, beyond the papers): the densities fit the training images on
    average, and one image's channel c is often better coded by the table that another rate point learned for
    channel c (one of a smoother image's channels is narrower than average, a textured image's wider; the
    points' tables are that channel at other scales, up to gain[j] / gain[q]). So the encoder tries every
    point's table on every channel, keeps the cheapest, and writes the choices first:

        choice[c] = argmin_j  bits(round(y_c - m_jc) | table j, channel c) + bits(j | ~0.3^|j - q|)
        string: [flag | choice (one symbol per channel) | y, channel c rounded around m_jc, coded with table j]
                 (flag 0: no choices, every channel with rate point q's table, when that is cheaper)

    The tables stay the stored integers, so the decoder is as exact as without it; only the encoder does more.
    What it saves, measured: README, "Forward adaptation". Without it (`forward_adaptive=False`) the string is
    the channels coded with rate point q's tables alone, the papers' codec.
    """

    def __init__(self, priors: Sequence[TabulatedDensity], forward_adaptive: bool = False):
        """priors: one density per rate point (modules another codec holds are shared, not copied)."""
        super().__init__()
        self.priors = nn.ModuleList(priors)
        self.forward_adaptive = forward_adaptive

    def forward(self, y: Tensor, q: Tensor, log_gain: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        y_hat, bits = _per_point(self.priors, y, q)
        return y_hat, {"y": bits}

    def choice_pmf(self, q: int) -> np.ndarray:
        """The fixed distribution the choices of a file at rate point q are coded with (symbol j: point j)."""
        return _distance_pmf(np.abs(np.arange(len(self.priors)) - q))

    def _choose(self, y: Tensor, q: int) -> tuple[np.ndarray | None, list, float]:
        """(each channel's rate point, or None where choices do not pay (a tiny image); every point's tables;
        the bits of it all)."""
        tables = [p.tables() for p in self.priors]
        cost = np.stack([channel_bits(p.symbols(y, t[3]), p.costs(), t[1]) for p, t in zip(self.priors, tables)])
        choice, side = _adapt(cost, q, -np.log2(self.choice_pmf(q)))
        own = np.full(cost.shape[1], q) if choice is None else choice
        return choice, tables, side + float(cost[own, np.arange(cost.shape[1])].sum())

    @staticmethod
    def _chosen(choice: np.ndarray | None, q: int, tables: list) -> tuple[list, np.ndarray, np.ndarray]:
        """(counts, offsets, medians) of channel c's table in rate point choice[c]'s (None: q's), for every c."""
        choice = np.full(len(tables[q][1]), q) if choice is None else choice
        picked = [(tables[j][0][c], tables[j][1][c], tables[j][3][c]) for c, j in enumerate(choice)]
        return [t[0] for t in picked], np.array([t[1] for t in picked]), np.array([t[2] for t in picked])

    def compress(self, y: Tensor, q: int, log_gain: Tensor) -> list[bytes]:
        if not self.forward_adaptive:
            return [self.priors[q].compress(y)]
        choice, tables, _ = self._choose(y, q)
        counts, offsets, medians = self._chosen(choice, q, tables)
        enc = Encoder()
        _write_choices(enc, choice, self.choice_pmf(q))
        encode_channels(enc, channel_symbols(y, medians), counts, offsets)
        return [enc.to_bytes()]

    def decompress(self, strings: list[bytes], shape: tuple[int, ...], q: int, log_gain: Tensor) -> Tensor:
        self.check_strings(strings)
        if not self.forward_adaptive:
            return self.priors[q].decompress(strings[0], shape)
        shape = self.priors[q].check_shape(shape)
        dec = Decoder(strings[0])
        choice = _read_choices(dec, shape[1], self.choice_pmf(q))
        counts, offsets, medians = self._chosen(choice, q, [p.tables() for p in self.priors])
        return decode_channels(dec, shape, counts, offsets, medians).to(self.priors[q].table_medians.device)

    def estimate_bits(self, y: Tensor, q: int, log_gain: Tensor) -> float:
        return self._choose(y, q)[2] if self.forward_adaptive else self.priors[q].estimate_bits(y)


class HyperpriorLatentCodec(LatentCodec):
    """Scale hyperprior (Ballé et al. 2018):

        |y| -> h_a -> z -> round -> z_hat --(factorized density of rate point q)--> z's part of the string
        z_hat -> h_s (integer network) -> scale index per value of y
        y -> round -> y_hat --(the conditional, scale from the table by index)--> y's part

    The conditional is the paper's Gaussian or, with the same indexes, a logistic (the encoder's setting
    `conditional`, one symbol at the start of the string; its heavier tails code the same networks' predictions in
    fewer bits: entropy/conditional.py). One range-coded string holds it all, in the order the decoder needs it:

        [conditional | z | shifts (forward adaptation, below) | y]

    (files before 2026-12-07 hold z and [shifts | y] in two strings, y coded with the Gaussian: one string saves a
    chunk's length and checksum and a coder's flush, about 11 bytes a file).

    h_s's last layer gives one real number per value of y: its scale index (training uses it as is; coding
    rounds it to an integer in [0, LEVELS)). z_hat is on the 2^-8 grid of the factorized density's stored
    medians, which is the integer network's input grid, so h_s.exact(z_hat) is exact.

    Forward adaptation (`forward_adaptive`, beyond the papers; FactorizedLatentCodec's idea for a hyperprior):
    h_s's scales fit the training images on average, and one image's channel is often coded in fewer bits with
    all its scale indexes moved by the same integer. The encoder picks that shift per channel and writes the
    shifts before y:

        delta[c] = argmin_d  bits(y_c | clamp(indexes + d, 0, LEVELS - 1)) + bits(d | ~0.3^|d|),  |d| <= SHIFTS
        shifts: [flag | delta (one symbol per channel)]   (flag 0: no shifts, when they do not pay)

    Indexes and shifts are integers, so the decoder's tables are the encoder's on any machine.
    """

    n_strings = 1
    legacy_strings = 2

    def __init__(self, h_a: nn.Module, h_s: IntegerNetwork, z_priors: Sequence[TabulatedDensity],
                 forward_adaptive: bool = False, conditional: str = "gaussian"):
        """z_priors: z's density per rate point; conditional: the one y is coded (and trained) with, a name in
        CONDITIONALS (a decoder reads every one)."""
        super().__init__()
        self.h_a, self.h_s = h_a, h_s
        self.z_priors = nn.ModuleList(z_priors)
        check_conditional(conditional)
        self.gaussian = GaussianConditional()  # its tables are in the weights' state
        self.logistic = LogisticConditional()  # its exact tables are built, not stored
        self.coded_with = CONDITIONALS.index(conditional)
        self.forward_adaptive = forward_adaptive

    def conditionals(self) -> tuple[ScaleConditional, ScaleConditional]:
        """Every conditional, in CONDITIONALS' order: the bit a string starts with picks one."""
        return self.gaussian, self.logistic

    @property
    def conditional(self) -> ScaleConditional:
        """The conditional y is coded (and trained) with."""
        return self.conditionals()[self.coded_with]

    # -- the string's head: which conditional (one bit), z, the shifts -------------------------------
    def _write_head(self, enc: Encoder, q: int, c: Coding) -> None:
        enc.categorical(np.array([self.coded_with]), _FLAG)
        self.z_priors[q].encode(enc, c.z)
        if self.forward_adaptive:
            self._write_shifts(enc, c.delta)

    def _read_head(self, dec: Decoder, shape: tuple[int, ...], q: int
                   ) -> tuple[ScaleConditional, Tensor, np.ndarray | None]:
        """What _write_head wrote: (the conditional, z_hat, the shifts or None)."""
        conditional = self.conditionals()[int(dec.categorical(1, _FLAG)[0])]
        z_hat = self.z_priors[q].decode(dec, self._z_shape(shape, q))
        return conditional, z_hat, self._read_shifts(dec, shape[1]) if self.forward_adaptive else None

    def _open(self, strings: list[bytes], shape: tuple[int, ...], q: int
              ) -> tuple[list[Decoder], ScaleConditional, Tensor, np.ndarray | None]:
        """A file's strings read up to y: (a decoder for each pass over y, at its start; the conditional; z_hat;
        the shifts or None). The earlier layout (legacy_strings): z's own string, then one string per pass, the
        first starting with the shifts; the Gaussian."""
        self.check_strings(strings)
        if len(strings) == self.legacy_strings:
            z_hat = self.z_priors[q].decompress(strings[0], self._z_shape(shape, q))
            passes = [Decoder(s) for s in strings[1:]]
            delta = self._read_shifts(passes[0], shape[1]) if self.forward_adaptive else None
            return passes, self.gaussian, z_hat, delta
        dec = Decoder(strings[0])
        return [dec] * (self.legacy_strings - 1), *self._read_head(dec, shape, q)

    # -- forward adaptation: per-channel shifts of the scale indexes ------------------------------------
    _SHIFT_PMF = _distance_pmf(np.abs(np.arange(-SHIFTS, SHIFTS + 1)))  # symbol d + SHIFTS: shift d

    def _choose_shifts(self, y: Tensor, index: Tensor, means: Tensor | None) -> tuple[np.ndarray | None, float]:
        """The cheapest shift per channel (C,) int64, or None where shifts do not pay; and the bits of the shifts'
        code (flag included). y, index, means of one shape (N, C, H, W)."""
        n, c = y.shape[:2]
        s = symbols(y - means if means is not None else y).reshape(n, c, -1)
        idx = index.detach().cpu().numpy().astype(np.int64).reshape(n, c, -1)
        cost = np.stack([self.conditional.symbol_bits(s, np.clip(idx + d, 0, LEVELS - 1)).sum(axis=(0, 2))
                         for d in range(-SHIFTS, SHIFTS + 1)])  # (shifts, C)
        choice, bits = _adapt(cost, SHIFTS, -np.log2(self._SHIFT_PMF))
        return (None if choice is None else choice - SHIFTS), bits

    def _write_shifts(self, enc: Encoder, delta: np.ndarray | None) -> None:
        _write_choices(enc, None if delta is None else delta + SHIFTS, self._SHIFT_PMF)

    def _read_shifts(self, dec: Decoder, channels: int) -> np.ndarray | None:
        symbols_ = _read_choices(dec, channels, self._SHIFT_PMF)
        return None if symbols_ is None else symbols_ - SHIFTS

    @staticmethod
    def _shifted(index: Tensor, delta: np.ndarray | None) -> Tensor:
        if delta is None:
            return index
        return (index + torch.from_numpy(delta).to(index.device).view(1, -1, 1, 1)).clamp(0, LEVELS - 1)

    @staticmethod
    def _shift(log_gain: Tensor, exact: bool = False) -> Tensor:
        """The rate point's scale-index shift log(g) / LOG_STEP, (N, C, 1, 1), on the 2^-ACT_BITS grid: real
        (straight-through rounding) in training; in exact mode grid integers computed on the CPU in float64 from
        the stored gains (one IEEE multiply, an add of 1/2 and a floor: the same number on every machine)."""
        if not exact:
            return quantize_activation(log_gain / LOG_STEP)[:, :, None, None]
        shift = torch.floor(log_gain.detach().cpu().double() * (2 ** ACT_BITS / LOG_STEP) + 0.5)
        return shift[:, :, None, None]

    @staticmethod
    def _to_index(out: Tensor) -> Tensor:
        """Grid integers (units of 2^-ACT_BITS) -> integer scale indexes in [0, LEVELS), int64."""
        return torch.floor((out + 2 ** (ACT_BITS - 1)) / 2 ** ACT_BITS).clamp(0, LEVELS - 1).long()

    def _index_grid(self, z_hat: Tensor, log_gain: Tensor) -> Tensor:
        """The scale indexes from z_hat before rounding (_to_index), exactly: grid integers, float64."""
        out = self.h_s.exact(z_hat)
        return out + self._shift(log_gain, exact=True).to(out.device)

    def _z_shape(self, shape: tuple[int, ...], q: int) -> tuple[int, int, int, int]:
        """z's shape for y of `shape` (h_a: two stride-2 convolutions, hyper_analysis)."""
        n, _, h, w = shape
        return n, self.z_priors[q].channels, h // 4, w // 4

    def _hyper_input(self, y: Tensor, log_gain: Tensor) -> Tensor:
        return y.abs() * torch.exp(-log_gain)[:, :, None, None]  # a scale hyperprior only needs magnitudes

    def forward(self, y: Tensor, q: Tensor, log_gain: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z_hat, z_bits = _per_point(self.z_priors, self.h_a(self._hyper_input(y, log_gain)), q)
        _, y_bits = self.conditional(y, self.h_s(z_hat) + self._shift(log_gain))
        return _round_ste(y), {"y": y_bits, "z": z_bits}

    def _z_hat(self, y: Tensor, q: int, log_gain: Tensor) -> tuple[Tensor, Tensor]:
        z = self.h_a(self._hyper_input(y, log_gain))
        return z, self.z_priors[q].quantize(z)  # what decompress returns

    def _coding(self, y: Tensor, q: int, log_gain: Tensor) -> Coding:
        z, z_hat = self._z_hat(y, q, log_gain)
        grid = self._index_grid(z_hat, log_gain)
        index = self._to_index(grid)
        delta, bits = self._choose_shifts(y, index, None) if self.forward_adaptive else (None, 0.0)
        return Coding(z, self._shifted(index, delta), grid, None, None, delta, bits)

    def compress(self, y: Tensor, q: int, log_gain: Tensor) -> list[bytes]:
        c = self._coding(y, q, log_gain)
        enc = Encoder()
        self._write_head(enc, q, c)
        self.conditional.encode(enc, y, c.index)
        return [enc.to_bytes()]

    def decompress(self, strings: list[bytes], shape: tuple[int, ...], q: int, log_gain: Tensor) -> Tensor:
        (dec,), conditional, z_hat, delta = self._open(strings, shape, q)
        index = self._to_index(self._index_grid(z_hat, log_gain))
        if tuple(index.shape) != tuple(shape):
            raise BitstreamError(f"corrupted file: side information of shape {tuple(index.shape)} for y of {shape}")
        return conditional.decode(dec, self._shifted(index, delta))

    def estimate_bits(self, y: Tensor, q: int, log_gain: Tensor) -> float:
        c = self._coding(y, q, log_gain)
        return (1.0 + self.z_priors[q].estimate_bits(c.z) + c.shift_bits
                + self.conditional.estimate_bits(y, c.index))


def checkerboard(h: int, w: int, device=None) -> Tensor:
    """1 at the anchors ((i + j) even), 0 elsewhere, shape (1, 1, h, w)."""
    i = torch.arange(h, device=device)[:, None]
    j = torch.arange(w, device=device)[None, :]
    return ((i + j) % 2 == 0).float()[None, None]


class CheckerboardLatentCodec(HyperpriorLatentCodec):
    """Mean-scale hyperprior with a checkerboard context (Minnen, Ballé, Toderici 2018; He et al. 2021):

        y -> h_a -> z -> round -> z_hat --(factorized density of rate point q)--> z
        z_hat -> h_s (integer) -> psi
        anchors:     (mu0, index) = e(psi, 0)                           y_hat[anchors]     --> anchors
        non-anchors: (mu0, index) = e(psi, g_ctx(y_hat * anchors / g))  y_hat[non-anchors] --> the rest
        one string: [conditional | z | shifts | anchors | the rest]   (before 2026-12-07 three: z, [shifts |
        anchors] and the rest, with the Gaussian)
        (mu = mu0 * g, index + the rate point's shift; y and y_hat in the gained units of rate point q)

    e (the entropy parameters) and g_ctx (a 5x5 convolution over the decoded anchors) are integer networks,
    so means and scale indexes are exact on any machine; y_hat = round(y - mu) + mu is on the 2^-8 grid
    they read. Both halves decode in one parallel pass each (the serial raster context of Minnen et al.
    would need one network evaluation per latent position).

    Like the scale indexes, the networks work in gain-free units, so one set serves every rate point: h_a
    reads y / g, g_ctx reads the decoded anchors / g, and e's means mu0 are multiplied by g (mu = mu0 * g;
    a mean, unlike a scale index, scales rather than shifts). In coding those products are exact: g and 1/g
    are integers on a grid of 2^-GAIN_BITS, stored per rate point and channel (`gain_grid`, `inv_gain_grid`,
    made by update_tables from the log-gains, like a density's tables: a decoder never computes an exp;
    0 until built, and coding refuses to run without them), and a grid value times one of them, rounded half
    up back to the 2^-8 grid, is an integer product below 2^53 (|x| clipped to 2^24 units, as in training,
    times g < 2^(GAIN_BITS + 12)).
    """

    legacy_strings = 3

    def __init__(self, h_a: nn.Module, h_s: IntegerNetwork, g_ctx: IntegerNetwork, e: IntegerNetwork,
                 z_priors: Sequence[TabulatedDensity], forward_adaptive: bool = False,
                 conditional: str = "gaussian"):
        super().__init__(h_a, h_s, z_priors, forward_adaptive, conditional)
        self.g_ctx, self.e = g_ctx, e
        points, channels = len(self.z_priors), g_ctx[0].conv.in_channels
        self.register_buffer("gain_grid", torch.zeros((points, channels), dtype=torch.int64))  # 0: not built
        self.register_buffer("inv_gain_grid", torch.zeros((points, channels), dtype=torch.int64))

    def update_tables(self, log_gain: Tensor) -> None:
        super().update_tables(log_gain)
        for grid, sign in ((self.gain_grid, 1.0), (self.inv_gain_grid, -1.0)):
            g = torch.floor(torch.exp(sign * log_gain.detach().double()) * 2 ** GAIN_BITS + 0.5)
            grid.copy_(g.clamp(1, 2 ** (GAIN_BITS + 12) - 1).to(grid.device))

    def _grid(self, grid: Tensor, q: int) -> Tensor:
        """Rate point q's row of a gain grid, (1, C) float64 integers; refused until update_tables built it."""
        if not bool((grid[q] > 0).all()):
            raise RuntimeError("the rate points' gain grids are not built: call update_tables() before coding")
        return grid[[q]].double()

    @staticmethod
    def _times_real(x: Tensor, log_gain: Tensor) -> Tensor:
        """Training: x times exp(log_gain) per sample and channel (log_gain (N, C)), on the 2^-ACT_BITS grid
        with the rounding passed straight through and the activations' clipping."""
        return quantize_activation(x * torch.exp(log_gain)[:, :, None, None])

    @staticmethod
    def _times_exact(x: Tensor, grid: Tensor) -> Tensor:
        """Coding: the same product on grid integers (units of 2^-ACT_BITS, float64) with a gain grid row (1, C)
        (_grid): one integer product, a rounding by a power of two, and the product clipped as training clips it
        (x, an integer network's output, is within the clip already; clamping it too only guards the bound)."""
        lim = CLIP * 2 ** ACT_BITS
        x = x.clamp(-lim, lim) * grid.to(x.device)[:, :, None, None]
        return torch.floor((x + 2 ** (GAIN_BITS - 1)) / 2 ** GAIN_BITS).clamp(-lim, lim)

    def _hyper_input(self, y: Tensor, log_gain: Tensor) -> Tensor:
        return y * torch.exp(-log_gain)[:, :, None, None]  # means need signs

    def _params_real(self, psi: Tensor, ctx: Tensor, shift: Tensor, log_gain: Tensor) -> tuple[Tensor, Tensor]:
        """Training: (means in y's gained units, real scale indexes with the rate point's shift added)."""
        mu0, index = self.e(torch.cat([psi, ctx], dim=1)).chunk(2, dim=1)
        return self._times_real(mu0, log_gain), index + shift

    def _params_exact(self, psi: Tensor, ctx: Tensor | None, shift: Tensor, gain: Tensor, where: Tensor
                      ) -> tuple[Tensor, Tensor]:
        """Coding: (means in y's gained units on the 2^-8 grid, float32; scale indexes before rounding, grid
        integers in float64 (_to_index rounds them)) from psi and
        ctx on the grid (None: no context, zeros, whose products e skips), `shift` exact (_shift), `gain` the
        point's gain grid row (_grid). e is 1x1 convolutions, so it runs only at the positions `where`
        (1, 1, H, W) selects, the half of the checkerboard a pass codes; the other positions get zeros, which no
        pass reads."""
        x = psi if ctx is None else torch.cat([psi, ctx], dim=1)
        zeros = self.g_ctx[0].conv.out_channels if ctx is None else 0
        sel = where[0, 0].bool()
        out = torch.zeros((x.shape[0], self.e[-1].conv.out_channels, *x.shape[2:]), dtype=torch.float64,
                          device=x.device)
        out[:, :, sel] = self.e.exact(x[:, :, sel][..., None], trailing_zeros=zeros)[..., 0]
        mu0, index = out.chunk(2, dim=1)
        mu = self._times_exact(mu0, gain)
        return (mu / 2 ** ACT_BITS).float(), index + shift.to(index.device)

    def forward(self, y: Tensor, q: Tensor, log_gain: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z_hat, z_bits = _per_point(self.z_priors, self.h_a(self._hyper_input(y, log_gain)), q)
        psi, shift = self.h_s(z_hat), self._shift(log_gain)
        a = checkerboard(*y.shape[2:], device=y.device)
        no_ctx = torch.zeros_like(psi[:, :self.g_ctx[0].conv.out_channels])
        mu_a, index_a = self._params_real(psi, no_ctx, shift, log_gain)
        y_hat_a = _round_ste(y - mu_a) + mu_a
        ctx = self.g_ctx(self._times_real(y_hat_a * a, -log_gain))
        mu_n, index_n = self._params_real(psi, ctx, shift, log_gain)
        mu, index = mu_a * a + mu_n * (1 - a), index_a * a + index_n * (1 - a)
        _, y_bits = self.conditional(y, index, mu)
        return _round_ste(y - mu) + mu, {"y": y_bits, "z": z_bits}

    def _anchor_params(self, z_hat: Tensor, shape, shift: Tensor, q: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        psi = self.h_s.exact(z_hat) / 2 ** ACT_BITS
        if tuple(psi.shape[2:]) != tuple(shape[2:]):
            raise BitstreamError(f"corrupted file: side information of shape {tuple(psi.shape)} for y of {tuple(shape)}")
        a = checkerboard(*shape[2:], device=psi.device).bool().expand(shape)
        mu, grid = self._params_exact(psi, None, shift, self._grid(self.gain_grid, q), a[:1, :1])
        return psi, a, mu, grid

    def _nonanchor_params(self, psi: Tensor, y_hat_a: Tensor, shift: Tensor, q: int) -> tuple[Tensor, Tensor]:
        """y_hat_a: the decoded anchors (zeros elsewhere), gained units, on the 2^-8 grid."""
        y_free = self._times_exact(y_hat_a.double() * 2 ** ACT_BITS, self._grid(self.inv_gain_grid, q))
        ctx = self.g_ctx.exact_checkerboard(y_free / 2 ** ACT_BITS) / 2 ** ACT_BITS  # read at the non-anchors only
        return self._params_exact(psi, ctx, shift, self._grid(self.gain_grid, q),
                                  1 - checkerboard(*psi.shape[2:], device=psi.device))

    def _coding(self, y: Tensor, q: int, log_gain: Tensor) -> Coding:
        """Means and indexes over both halves: what the string codes after its head (the anchors, then the rest)."""
        z, z_hat = self._z_hat(y, q, log_gain)
        shift = self._shift(log_gain, exact=True)
        psi, a, mu, grid = self._anchor_params(z_hat, y.shape, shift, q)
        y_hat_a = torch.where(a, torch.round(y - mu) + mu, torch.zeros_like(y))
        mu_n, grid_n = self._nonanchor_params(psi, y_hat_a, shift, q)
        mu, grid = torch.where(a, mu, mu_n), torch.where(a, grid, grid_n)
        index = self._to_index(grid)
        delta, bits = self._choose_shifts(y, index, mu) if self.forward_adaptive else (None, 0.0)
        return Coding(z, self._shifted(index, delta), grid, mu, a, delta, bits)

    def compress(self, y: Tensor, q: int, log_gain: Tensor) -> list[bytes]:
        c = self._coding(y, q, log_gain)
        a, index, mu = c.anchors, c.index, c.mu
        enc = Encoder()
        self._write_head(enc, q, c)
        self.conditional.encode(enc, y[a], index[a], mu[a])
        self.conditional.encode(enc, y[~a], index[~a], mu[~a])
        return [enc.to_bytes()]

    def decompress(self, strings: list[bytes], shape: tuple[int, ...], q: int, log_gain: Tensor) -> Tensor:
        (anchors, rest), conditional, z_hat, delta = self._open(strings, shape, q)
        shift = self._shift(log_gain, exact=True)
        psi, a, mu, grid = self._anchor_params(z_hat, shape, shift, q)
        y_hat = torch.zeros(shape, device=psi.device)
        y_hat[a] = conditional.decode(anchors, self._shifted(self._to_index(grid), delta)[a], mu[a])
        mu_n, grid_n = self._nonanchor_params(psi, y_hat, shift, q)
        y_hat[~a] = conditional.decode(rest, self._shifted(self._to_index(grid_n), delta)[~a], mu_n[~a])
        return y_hat

    def estimate_bits(self, y: Tensor, q: int, log_gain: Tensor) -> float:
        c = self._coding(y, q, log_gain)
        a, index, mu = c.anchors, c.index, c.mu
        return (1.0 + self.z_priors[q].estimate_bits(c.z) + c.shift_bits
                + self.conditional.estimate_bits(y[a], index[a], mu[a])
                + self.conditional.estimate_bits(y[~a], index[~a], mu[~a]))
