"""Toderici, Vincent, Johnston, Hwang, Minnen, Shor, Covell, "Full Resolution Image Compression with
Recurrent Neural Networks", CVPR 2017.

The whole image is coded in iterations; each adds 32 bits per 16x16 block (0.125 bpp before entropy
coding) describing what the previous iterations left:

    r_0 = x - 1/2
    b_t = binarize(E(g_t r_{t-1}))                    E: [conv 3x3 /2, 64] [RNN 3x3 /2, W] x3 stages -> 32 bits
    x_t = framing(D(b_t) / g_t, x_{t-1}),  r_t = x - 1/2 - x_t
    D: [conv 1x1, W] [RNN 1x1, W] d2s [RNN 3x3, W] d2s [RNN 3x3, W/2] d2s [RNN 3x3, W/4] d2s [conv 1x1, 3]
       (d2s: depth-to-space x2; RNN: convolutional LSTM or GRU, hidden kernels 1x1, state across iterations)

The paper's reconstruction framings:
  oneshot            x_t = D(b_t): the decoder's state carries everything, each output is the whole image
  additive           x_t = x_{t-1} + D(b_t)
  residual-scaling   additive, with the residual scaled up by g_t before encoding and the output scaled back
                     down: g_t (one gain per 8x8 block) is predicted from x_{t-1} by a small network, so the
                     decoder knows it too and late iterations can code small residuals at full precision
W = 256 (the paper used 512 in the deepest layers; halved for 2-core training and small weights).

Entropy coding of the bits (in the spirit of the paper's BinaryRNN: probabilities from bits already
decoded), per iteration, in two passes over a checkerboard so that both are one network evaluation:
    pass 1: bits at positions (i + j) even, given the previous iteration's code b_{t-1}
    pass 2: the other positions, given b_{t-1} and the pass-1 bits of b_t around them
The context network is [conv 3x3, 64] relu [conv 3x3, 64] relu [conv 1x1, 32] -> logit of p(bit = 1), an
integer network (Ballé, Johnston, Minnen, ICLR 2019; nn/integer.py): the decoder must compute exactly the
probabilities the encoder used, on any machine, or the range decoder desynchronizes. Its integer logit picks
a 12-bit probability from a fixed table. Each iteration is one chunk of the file, so any prefix of it decodes
(`nc.truncate`).

Large images are coded in independent tiles of TILE_SIDE pixels (one tile up to that size), so memory stays
bounded whatever the image: tile by tile, each runs all its iterations, and iteration t of every tile goes,
in turn, into chunk t.
"""
from __future__ import annotations

import functools

from dataclasses import dataclass
from typing import ClassVar, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..entropy.coder import Decoder, Encoder, information_bits
from ..entropy.latent import checkerboard
from ..image import from_tensor, to_tensor
from ..learned import LearnedCodec
from ..nn import Binarizer, ConvGRUCell, ConvLSTMCell
from ..nn.integer import ACT_BITS, IntegerConv, IntegerNetwork
from ..codec import check_index_quality, progress
from ..registry import register

BITS = 32          # per 16x16 block and iteration: 0.125 bpp
ITERATIONS = 16
W = 256
PROB_BITS = 12     # the coder's probabilities are multiples of 2^-12
TILE_SIDE = 1024   # pixels per side of the tiles large images are coded in (a multiple of 16)
LOGIT_CLIP = 16 * 2 ** ACT_BITS  # integer logits beyond +-16 have the bounding probability anyway


@functools.cache
def probability_table() -> np.ndarray:
    """p(bit = 1) in units of 2^-PROB_BITS for each integer logit l (units of 2^-ACT_BITS) in [-LOGIT_CLIP,
    LOGIT_CLIP]: round(2^PROB_BITS * sigmoid(l / 2^ACT_BITS)), kept within [1, 2^PROB_BITS - 1] (no bit is
    impossible). Every entry lies more than 1e-4 from a rounding boundary, so any exp accurate to far less than
    that (float64's is to ~1e-16) gives every decoder the very same table; the check below refuses a machine
    whose exp would not, and tests/test_toderici2017.py pins the table's bytes."""
    one = 2 ** PROB_BITS / (1 + np.exp(-np.arange(-LOGIT_CLIP, LOGIT_CLIP + 1) / 2 ** ACT_BITS))
    if np.abs(one - np.floor(one) - 0.5).min() < 1e-6:
        raise RuntimeError("toderici2017's probability table is ambiguous on this machine (its exp is inexact)")
    return np.clip(np.round(one), 1, 2 ** PROB_BITS - 1).astype(np.int64)


class ContextModel(nn.Module):
    """The logit of p(bit = 1) for each bit of b_t from the previous code and, in pass 2, the pass-1 bits of b_t:
    an integer network, trained through its straight-through rounding, evaluated exactly for coding."""

    def __init__(self):
        super().__init__()
        self.net = IntegerNetwork(IntegerConv(2 * BITS + 1, 64, 3), nn.ReLU(), IntegerConv(64, 64, 3), nn.ReLU(),
                                  IntegerConv(64, BITS, 1))

    def _input(self, previous: Tensor, seen: Tensor, second_pass: bool) -> Tensor:
        return torch.cat([previous, seen, torch.full_like(previous[:, :1], float(second_pass))], dim=1)

    def logits(self, previous: Tensor, seen: Tensor, second_pass: bool) -> Tensor:
        """Training: real logits through the network's straight-through rounding."""
        return self.net(self._input(previous, seen, second_pass))

    def exact_logits(self, previous: Tensor, seen: Tensor, second_pass: bool) -> Tensor:
        """Coding: the logits as integers (units of 2^-ACT_BITS, int64), the same on every machine."""
        return self.net.exact(self._input(previous, seen, second_pass)).long()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights from before the network was an integer network (nn.Conv2d layers: net.N.weight) load into
        # its IntegerConv layers (net.N.conv.weight), onto whose grids they are rounded when used
        for i in (0, 2, 4):
            for p in ("weight", "bias"):
                old = f"{prefix}net.{i}.{p}"
                if old in state_dict:
                    state_dict[f"{prefix}net.{i}.conv.{p}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def bits(self, b: Tensor, previous: Tensor) -> Tensor:
        """Training: the cross-entropy (bits) of code b (values +-1) under both passes, per sample."""
        a = checkerboard(*b.shape[2:], device=b.device)
        target = (b > 0).float()
        first = F.binary_cross_entropy_with_logits(self.logits(previous, torch.zeros_like(b), False), target,
                                                   reduction="none")
        second = F.binary_cross_entropy_with_logits(self.logits(previous, b * a, True), target, reduction="none")
        nats = first * a + second * (1 - a)
        return nats.sum(dim=(1, 2, 3)) / np.log(2)

    @staticmethod
    def pmf(logits: Tensor) -> np.ndarray:
        """Rows [p(0), p(1)] from integer logits (exact_logits), by table."""
        one = probability_table()[logits.flatten().clamp(-LOGIT_CLIP, LOGIT_CLIP).numpy() + LOGIT_CLIP]
        return np.stack([2 ** PROB_BITS - one, one], axis=1) / 2 ** PROB_BITS


def _cell(kind: str):
    return ConvLSTMCell if kind == "lstm" else ConvGRUCell


class _Encoder(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 3, stride=2, padding=1)
        self.rnn = nn.ModuleList([_cell(kind)(64, W, 3, 2), _cell(kind)(W, W, 3, 2), _cell(kind)(W, W, 3, 2)])
        self.binarizer = Binarizer(W, BITS)

    def forward(self, r: Tensor, state: list) -> Tensor:
        h = self.conv(r)
        for i, cell in enumerate(self.rnn):
            h, state[i] = cell(h, state[i])
        return self.binarizer(h)


class _Decoder(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.conv = nn.Conv2d(BITS, W, 1)
        self.rnn = nn.ModuleList([_cell(kind)(W, W, 1), _cell(kind)(W // 4, W, 3), _cell(kind)(W // 4, W // 2, 3),
                                  _cell(kind)(W // 8, W // 4, 3)])
        self.out = nn.Conv2d(W // 16, 3, 1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, b: Tensor, state: list) -> Tensor:
        h = self.conv(b)
        for i, cell in enumerate(self.rnn):
            h, state[i] = cell(h, state[i])
            h = self.shuffle(h)
        return torch.tanh(self.out(h)) / 2


class GainEstimator(nn.Module):
    """Residual scaling: a gain >= 1 per 8x8 block, predicted from the reconstruction so far."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(32, 1, 3, stride=2, padding=1))

    def forward(self, x_prev: Tensor) -> Tensor:
        g = 1 + F.softplus(self.net(x_prev))
        return F.interpolate(g, scale_factor=8, mode="nearest")


@register("toderici2017")
class Toderici2017(LearnedCodec):
    __doc__ = __doc__  # the module's: the paper and the data flow, for help()
    quality_meaning = "iterations 1-16 (0.125 bpp each before entropy coding)"
    @dataclass(frozen=True)
    class Config:
        quality: int = 8  # iterations (0.125 bpp each before entropy coding)
        cell: str = "lstm"
        framing: str = "residual-scaling"

        def __post_init__(self):
            check_index_quality("toderici2017", self.quality, ITERATIONS, "iteration count")
            if self.cell not in ("lstm", "gru"):
                raise ValueError(f"toderici2017 cell must be 'lstm' or 'gru', got {self.cell!r}")
            if self.framing not in ("oneshot", "additive", "residual-scaling"):
                raise ValueError(f"toderici2017 framing must be oneshot, additive or residual-scaling, got {self.framing!r}")

    qualities: ClassVar[tuple] = tuple(range(1, ITERATIONS + 1))
    lmbdas = (1.0,)
    progressive = True
    pad_to = 16

    def __init__(self, config, name=None, lmbdas=None):
        super().__init__(config, name, lmbdas)
        self.encoder = _Encoder(config.cell)
        self.decoder = _Decoder(config.cell)
        self.context = ContextModel()
        self.gain = GainEstimator() if config.framing == "residual-scaling" else None


    def _gain(self, x_prev: Tensor) -> Tensor | float:
        """g_t from the (centred) reconstruction so far; 1 without residual scaling."""
        return self.gain(x_prev + 0.5) if self.gain is not None else 1.0

    def _step(self, x_prev: Tensor, b: Tensor, g: Tensor | float, d_state: list) -> Tensor:
        """x_t from x_{t-1} and b_t (both centred), by the configured framing."""
        out = self.decoder(b, d_state)
        return out if self.config.framing == "oneshot" else x_prev + out / g

    def _encode_iterations(self, x: Tensor, iterations: int) -> tuple[list[Tensor], list[Tensor]]:
        e_state, d_state = [None] * 3, [None] * 4
        x_t = torch.zeros_like(x)
        codes, recons = [], []
        for _ in progress(range(iterations), desc="toderici2017 iterations") if not self.training else range(iterations):
            g = self._gain(x_t)
            b = self.encoder((x - 0.5 - x_t) * g, e_state)
            x_t = self._step(x_t, b, g, d_state)
            codes.append(b)
            recons.append(x_t + 0.5)
        return codes, recons

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        iterations = self.unroll or ITERATIONS
        codes, recons = self._encode_iterations(x, iterations)
        # the context model learns from the codes (detached: it must not change them)
        bits, previous = x.new_zeros(x.shape[0]), torch.zeros_like(codes[0])
        for b in codes:
            bits = bits + self.context.bits(b.detach(), previous)
            previous = b.detach()
        n = x.shape[0] * iterations
        # every iteration's reconstruction is scored; the rate term (per sample, spread over iterations)
        # trains only the context model
        return {"x_hat": torch.cat(recons), "target": x.repeat(iterations, 1, 1, 1),
                "bits": (bits / iterations).repeat(iterations), "lmbda": x.new_ones(n)}

    @torch.no_grad()
    def estimate_bits(self, x: np.ndarray) -> float:
        """The information content of the codes under the probabilities the range coder uses (tile by tile)."""
        return sum(information_bits(symbols, pmf) for symbols, pmf in self._coded(x))

    # -- real coding: chunk t = iteration t's bits of every tile, range coded in two passes ----------------
    def _coded(self, x: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(bits, their pmf rows) in coding order, each pass of each iteration of each tile; yields the pairs of
        iteration t every `quality`-th time, t = 0, 1, ... within a tile."""
        for rows, cols in _tiles(*x.shape[:2]):
            codes, _ = self._encode_iterations(to_tensor(np.ascontiguousarray(x[rows, cols])), self.config.quality)
            previous = torch.zeros_like(codes[0])
            for b in codes:
                a = checkerboard(*b.shape[2:]).expand_as(b).bool()
                symbols = (b > 0).long()
                yield symbols[a].numpy(), self.context.pmf(self.context.exact_logits(previous, torch.zeros_like(b), False)[a])
                yield symbols[~a].numpy(), self.context.pmf(self.context.exact_logits(previous, b * a, True)[~a])
                previous = b

    @torch.no_grad()
    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        encoders = [Encoder() for _ in range(self.config.quality)]
        for i, (symbols, pmf) in enumerate(self._coded(x)):
            encoders[i // 2 % self.config.quality].categorical(symbols, pmf)  # two passes per iteration
        return [enc.to_bytes() for enc in encoders]

    @torch.no_grad()
    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        h, w, _ = shape
        decoders = [Decoder(chunk) for chunk in chunks]
        out = np.empty((h, w, 3), np.uint8)
        for rows, cols in _tiles(h, w):
            th, tw = rows.stop - rows.start, cols.stop - cols.start
            code_shape = (1, BITS, th // 16, tw // 16)
            a = checkerboard(th // 16, tw // 16).expand(code_shape).bool()
            previous, d_state, x_t = torch.zeros(code_shape), [None] * 4, torch.zeros(1, 3, th, tw)
            for dec in progress(decoders, desc="toderici2017 iterations"):
                b = torch.zeros(code_shape)
                first = dec.categorical(int(a.sum()), self.context.pmf(self.context.exact_logits(previous, b, False)[a]))
                b[a] = torch.from_numpy(first.astype(np.float32)) * 2 - 1
                second = dec.categorical(int((~a).sum()), self.context.pmf(self.context.exact_logits(previous, b * a, True)[~a]))
                b[~a] = torch.from_numpy(second.astype(np.float32)) * 2 - 1
                x_t = self._step(x_t, b, self._gain(x_t), d_state)
                previous = b
            out[rows, cols] = from_tensor(x_t + 0.5)
        return out


def _tiles(h: int, w: int) -> list[tuple[slice, slice]]:
    """The tiles of a padded h x w image, row by row: TILE_SIDE square, smaller at the right and bottom edges."""
    return [(slice(r, min(r + TILE_SIDE, h)), slice(c, min(c + TILE_SIDE, w)))
            for r in range(0, h, TILE_SIDE) for c in range(0, w, TILE_SIDE)]
