"""Toderici, O'Malley, Hwang, Vincent, Minnen, Baluja, Covell, Sukthankar, "Variable Rate Image Compression
with Recurrent Neural Networks", ICLR 2016.

Images are cut into 32x32 tiles (padding the border ones) and every tile is coded in iterations; each
iteration codes what the previous ones left and adds BITS = 128 bits per tile (0.125 bpp):

    r_0 = x - 1/2
    b_t = binarize(E(r_{t-1}))                        BITS values in {-1, 1}: the file's chunk t
    x_t = D(b_1, ..., b_t) + 1/2,   r_t = x - x_t     (how D combines the codes depends on the architecture)

Two of the paper's architectures:
  lstm (default)  convolutional/deconvolutional LSTM: E = [conv 3x3 /2, 64] [LSTM 3x3 /2, W]
                  [LSTM 3x3 /2, W] -> binarizer (8 bits at each of 4x4 positions); D = [conv 1x1, W]
                  [LSTM 1x1, W] depth-to-space x2 [LSTM 3x3, W] x2 [LSTM 3x3, W/2] x2 -> [conv 1x1, 3],
                  tanh; W = 256, half the paper's 512 (2-core training, small weights); hidden kernels 1x1.
                  E and D carry state across iterations and D's output is the whole reconstruction
                  ("one-shot": x_t = D_t + 1/2).
  fc              fully-connected residual: E = FC 512, FC 512 -> binarizer (FC, BITS); D = FC 512, FC 512,
                  FC 3072, tanh. No state: each iteration's output is added (x_t = x_{t-1} + D(b_t)).
Rate is the number of iterations; a file holds one chunk per iteration, so cutting it after k chunks
(`nc.truncate`) gives the image at k iterations. The bits are stored as they are (the 2016 paper has no
entropy coding; toderici2017 adds it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import BitstreamError
from ..image import from_tensor, to_tensor
from ..learned import LearnedCodec
from ..nn import Binarizer, ConvLSTMCell
from ..codec import check_index_quality, progress
from ..registry import register

TILE = 32
BITS = 128  # per tile and iteration: 0.125 bpp
ITERATIONS = 16
TILE_BATCH = 256  # tiles coded at once (see encode_chunks)
W = 256  # LSTM width: half the paper's 512, for 2-core training and small weights (5.3 M parameters)


class _LSTMCoder(nn.Module):
    """The convolutional/deconvolutional LSTM encoder and decoder. The recurrent state is the caller's
    (`initial_state`, passed to every call), never the module's: one cached codec decodes in several threads."""

    def __init__(self):
        super().__init__()
        self.e_conv = nn.Conv2d(3, 64, 3, stride=2, padding=1)
        self.e_rnn = nn.ModuleList([ConvLSTMCell(64, W, 3, 2), ConvLSTMCell(W, W, 3, 2)])
        self.binarizer = Binarizer(W, BITS // 16)
        self.d_conv = nn.Conv2d(BITS // 16, W, 1)
        self.d_rnn = nn.ModuleList([ConvLSTMCell(W, W, 1), ConvLSTMCell(W // 4, W, 3), ConvLSTMCell(W // 4, W // 2, 3)])
        self.d_out = nn.Conv2d(W // 8, 3, 1)
        self.shuffle = nn.PixelShuffle(2)

    def initial_state(self) -> dict[str, list]:
        return {"e": [None] * len(self.e_rnn), "d": [None] * len(self.d_rnn)}

    def encode(self, r: Tensor, state: dict[str, list]) -> Tensor:
        h = self.e_conv(r)
        for i, cell in enumerate(self.e_rnn):
            h, state["e"][i] = cell(h, state["e"][i])
        return self.binarizer(h)  # N x 8 x 4 x 4

    def decode(self, b: Tensor, previous: Tensor, state: dict[str, list]) -> Tensor:
        h = self.d_conv(b)
        for i, cell in enumerate(self.d_rnn):
            h, state["d"][i] = cell(h, state["d"][i])
            h = self.shuffle(h)
        return torch.tanh(self.d_out(h)) / 2  # one-shot: the whole reconstruction, centred


class _FCCoder(nn.Module):
    def __init__(self):
        super().__init__()
        n = 3 * TILE * TILE
        self.e = nn.Sequential(nn.Flatten(), nn.Linear(n, 512), nn.Tanh(), nn.Linear(512, 512), nn.Tanh())
        self.binarizer = Binarizer(512, BITS)
        self.d = nn.Sequential(nn.Linear(BITS, 512), nn.Tanh(), nn.Linear(512, 512), nn.Tanh(), nn.Linear(512, n))

    def initial_state(self) -> dict[str, list]:
        return {}  # feed-forward: no state

    def encode(self, r: Tensor, state: dict[str, list]) -> Tensor:
        return self.binarizer(self.e(r)[:, :, None, None])  # N x BITS x 1 x 1

    def decode(self, b: Tensor, previous: Tensor, state: dict[str, list]) -> Tensor:
        return previous + torch.tanh(self.d(b.flatten(1))).view(-1, 3, TILE, TILE) / 2  # additive


def _tiles(x: Tensor) -> Tensor:
    """1 x 3 x H x W (multiples of TILE) -> (H/TILE * W/TILE) x 3 x TILE x TILE, row-major."""
    t = x.unfold(2, TILE, TILE).unfold(3, TILE, TILE)  # 1 x 3 x th x tw x TILE x TILE
    return t.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, TILE, TILE)


def _untile(t: Tensor, h: int, w: int) -> Tensor:
    th, tw = h // TILE, w // TILE
    return t.view(1, th, tw, 3, TILE, TILE).permute(0, 3, 1, 4, 2, 5).reshape(1, 3, h, w)


@register("toderici2016")
class Toderici2016(LearnedCodec):
    __doc__ = __doc__  # the module's: the paper and the data flow, for help()
    quality_meaning = "iterations 1-16 (0.125 bpp each)"
    @dataclass(frozen=True)
    class Config:
        quality: int = 8  # iterations (0.125 bpp each)
        architecture: str = "lstm"

        def __post_init__(self):
            check_index_quality("toderici2016", self.quality, ITERATIONS, "iteration count")
            if self.architecture not in ("lstm", "fc"):
                raise ValueError(f"toderici2016 architecture must be 'lstm' or 'fc', got {self.architecture!r}")

    qualities: ClassVar[tuple] = tuple(range(1, ITERATIONS + 1))
    lmbdas = (1.0,)  # plain MSE: the rate is set by the iteration count
    progressive = True
    pad_to = TILE

    def __init__(self, config, name=None, lmbdas=None):
        super().__init__(config, name, lmbdas)
        self.coder = _LSTMCoder() if config.architecture == "lstm" else _FCCoder()

    def estimate_bits(self, x: np.ndarray) -> float:
        return float(BITS * (x.shape[0] // TILE) * (x.shape[1] // TILE) * self.config.quality)

    def _iterate(self, x: Tensor, iterations: int, codes: list[Tensor] | None = None):
        """Run the residual loop on tiles x (N x 3 x TILE x TILE in [0, 1]); encode (codes None) or decode
        the given codes. Returns the codes and the reconstruction after every iteration."""
        state = self.coder.initial_state()
        x_t = torch.zeros_like(x)
        out_codes, recons = [], []
        for t in progress(range(iterations), desc="toderici2016 iterations") if not self.training else range(iterations):
            b = self.coder.encode(x - 0.5 - x_t, state) if codes is None else codes[t]
            x_t = self.coder.decode(b, x_t, state)
            out_codes.append(b)
            recons.append(x_t + 0.5)
        return out_codes, recons

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Training on TILE x TILE crops: every iteration's reconstruction is scored against x."""
        iterations = self.unroll or ITERATIONS
        _, recons = self._iterate(x, iterations)
        n = x.shape[0] * iterations
        return {"x_hat": torch.cat(recons), "target": x.repeat(iterations, 1, 1, 1),
                "bits": x.new_full((n,), 0.0), "lmbda": x.new_ones(n)}

    # -- real coding: chunk t = the tiles' bits of iteration t, packed 8 to a byte ----------------
    # Tiles are coded independently, TILE_BATCH at a time: memory stays bounded whatever the image's size (the
    # recurrent state is ~400 bytes per pixel, and a file's size does not bound the image it claims).
    @torch.no_grad()
    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        tiles = _tiles(to_tensor(x))
        per_batch = [self._iterate(tiles[i:i + TILE_BATCH], self.config.quality)[0]
                     for i in range(0, len(tiles), TILE_BATCH)]
        return [np.packbits(torch.cat(codes).flatten().numpy() > 0).tobytes() for codes in zip(*per_batch)]

    @torch.no_grad()
    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        h, w, _ = shape
        n = (h // TILE) * (w // TILE)
        code_shape = (n, BITS // 16, 4, 4) if self.config.architecture == "lstm" else (n, BITS, 1, 1)
        codes = []
        for chunk in chunks:
            if len(chunk) != n * BITS // 8:
                raise BitstreamError(f"corrupted file: an iteration holds {len(chunk)} bytes, expected {n * BITS // 8}")
            bits = np.unpackbits(np.frombuffer(chunk, np.uint8)).astype(np.float32) * 2 - 1
            codes.append(torch.from_numpy(bits).view(code_shape))
        out = []
        for i in range(0, n, TILE_BATCH):
            batch = [c[i:i + TILE_BATCH] for c in codes]
            out.append(self._iterate(torch.zeros(len(batch[0]), 3, TILE, TILE), len(chunks), batch)[1][-1])
        return from_tensor(_untile(torch.cat(out), h, w))
