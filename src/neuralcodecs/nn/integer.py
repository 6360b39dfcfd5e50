"""Integer networks: a network whose output is the same number on every machine.

Ballé, Johnston, Minnen, "Integer networks for data compression with latent-variable models", ICLR 2019.
A hyperprior's decoder must compute the entropy parameters (scale indexes, means) exactly as the encoder did,
or the range decoder desynchronizes and the image decodes to garbage; float convolutions differ in the last
bit between CPUs, GPUs, libraries and thread counts. Only this network must be exact; the image synthesis
may stay in floating point.

The rule here: weights live on a grid of 2^-WEIGHT_BITS, biases and activations on a grid of 2^-ACT_BITS,
and every activation is rounded (half up) back onto its grid after each layer and clipped to +-CLIP. In
exact mode every tensor holds those grid values as integers in float64: each product and each partial sum
is then an integer below 2^53, which float64 represents exactly, so the sum is the same in any order on any
device (cuDNN is switched off there: its FFT and Winograd algorithms are not exact). Training runs the same
arithmetic in float32 with the rounding passed straight through (quantization-aware training), so what is
trained is what is coded.

Bound: inputs and activations below CLIP * 2^ACT_BITS = 2^24, weights below 2^(WEIGHT_BITS + 4), at most
2^13 terms per output: partial sums stay below 2^(24 + 12 + 13) = 2^49 < 2^53.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHT_BITS = 8   # weights on a grid of 1/256
ACT_BITS = 8      # activations and biases on a grid of 1/256 (the quantization grid of the factorized z)
CLIP = 2.0 ** 16  # activations clipped to +-CLIP
WEIGHT_CLIP = 16.0 - 2.0 ** -WEIGHT_BITS


def _round_half_up(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5)


def _ste(x: Tensor, q: Tensor) -> Tensor:
    return x + (q - x).detach()


def quantize_weight(w: Tensor) -> Tensor:
    """w on its grid (float, straight-through): the value exact mode uses."""
    w = w.clamp(-WEIGHT_CLIP, WEIGHT_CLIP)
    return _ste(w, _round_half_up(w * 2 ** WEIGHT_BITS) / 2 ** WEIGHT_BITS)


def quantize_activation(a: Tensor) -> Tensor:
    a = a.clamp(-CLIP, CLIP)
    return _ste(a, _round_half_up(a * 2 ** ACT_BITS) / 2 ** ACT_BITS)


class IntegerConv(nn.Module):
    """A conv (or transposed conv) on the integer grid: forward() in float with straight-through rounding
    (training), exact() on grid integers held in float64 (coding)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, transposed: bool = False):
        super().__init__()
        cls = nn.ConvTranspose2d if transposed else nn.Conv2d
        extra = {"output_padding": stride - 1} if transposed else {}
        self.conv = cls(cin, cout, k, stride=stride, padding=k // 2, **extra)

    def _call(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        c = self.conv
        if isinstance(c, nn.ConvTranspose2d):
            return F.conv_transpose2d(x, w, b, c.stride, c.padding, c.output_padding)
        return F.conv2d(x, w, b, c.stride, c.padding)

    def forward(self, x: Tensor) -> Tensor:
        b = quantize_activation(self.conv.bias)
        return quantize_activation(self._call(x, quantize_weight(self.conv.weight), b))

    @torch.no_grad()
    def exact(self, x_int: Tensor) -> Tensor:
        """x_int: float64 integers (activations times 2^ACT_BITS) -> the same for the output."""
        w = torch.round(quantize_weight(self.conv.weight).double() * 2 ** WEIGHT_BITS)
        b = torch.round(quantize_activation(self.conv.bias).double() * 2 ** ACT_BITS)
        with torch.backends.cudnn.flags(enabled=False):
            acc = self._call(x_int, w.to(x_int.device), None)
        acc = acc + b.to(x_int.device).view(1, -1, 1, 1) * 2 ** WEIGHT_BITS
        out = torch.floor((acc + 2 ** (WEIGHT_BITS - 1)) / 2 ** WEIGHT_BITS)  # exact: a power-of-two division
        return out.clamp(-CLIP * 2 ** ACT_BITS, CLIP * 2 ** ACT_BITS)


class IntegerNetwork(nn.Sequential):
    """IntegerConv layers with ReLUs between them (a ReLU of grid integers is exact)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(quantize_activation(x))  # the input on the grid, as exact() requires

    def exact(self, x: Tensor) -> Tensor:
        """x on the activation grid (any float dtype) -> the output on it, float64 in units of 2^-ACT_BITS.
        Raises ValueError if x is not on the grid (its values must come from the decoder's own integers)."""
        h = x.double() * 2 ** ACT_BITS
        if not bool(torch.equal(h, torch.round(h))):
            raise ValueError("integer network input is not on the 2^-ACT_BITS grid")
        h = h.clamp(-CLIP * 2 ** ACT_BITS, CLIP * 2 ** ACT_BITS)
        for layer in self:
            h = layer.exact(h) if isinstance(layer, IntegerConv) else torch.relu(h)
        return h
