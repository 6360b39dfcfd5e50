"""Ballé, Laparra, Simoncelli, "End-to-end Optimized Image Compression", ICLR 2017.

    x -> g_a: [conv 9x9 /4, GDN] [conv 5x5 /2, GDN] [conv 5x5 /2, GDN] -> y      (N channels at 1/16 size)
    y * gain[q] -> round (training: + uniform noise) -> y_hat -> range coder with the learned per-channel
                   density of rate point q                                     (the file's one chunk)
    y_hat / gain[q] -> g_s: [IGDN, deconv 5x5 x2] [IGDN, deconv 5x5 x2] [IGDN, deconv 9x9 x4] -> x_hat

The transforms are the paper's three stages (the first with a 9x9 kernel and 4x downsampling, the next two
5x5 with 2x), with N = 128 channels per stage: the paper's width for grayscale (it used 192 for RGB),
chosen because every step of training here runs on two CPU cores; at 1/16 resolution 128 latents per
256 pixels still carry the 1.5 bpp of the highest rate point.

Rate: where the paper trains one model per lambda, this codec trains ONE model for all rate points with
per-point channel gains (the "gain units" of Cui et al., CVPR 2021) and one learned density per point:
quality q scales y by gain[q] before rounding and divides by it after, so a larger gain means a finer
quantizer. Sharing the transforms makes each training step serve every rate, which is what a
2-core training budget needs; the gains and densities add only 2 x 128 + 128 x ~60 parameters per point.

Quantization in training: the rate term sees y + uniform noise (the paper's relaxation); the synthesis
sees round(y) with a straight-through gradient (Minnen & Singh 2020's mixed quantization), so that the
decoder trains on exactly what it will decode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..entropy.factorized import FactorizedPrior
from ..image import from_tensor, to_tensor
from ..learned import LearnedCodec
from ..nn import GDN
from ..registry import register

LMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932)
GAIN0 = 8.0  # initial gain of the middle rate point (see __init__)


def _conv(cin: int, cout: int, k: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _deconv(cin: int, cout: int, k: int, stride: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


@register("balle2017")
class Balle2017(LearnedCodec):
    @dataclass(frozen=True)
    class Config:
        quality: int = 4  # rate point 1..7 (lambda = LMBDAS[quality - 1])
        N: int = 128

        def __post_init__(self):
            if isinstance(self.quality, bool) or self.quality not in range(1, len(LMBDAS) + 1):
                raise ValueError(f"balle2017 quality must be an integer 1..{len(LMBDAS)}, got {self.quality!r}")

    qualities: ClassVar[tuple] = tuple(range(1, len(LMBDAS) + 1))
    default_quality = 4
    lmbdas = LMBDAS

    def __init__(self, config, name=None, lmbdas=None):
        super().__init__(config, name, lmbdas)
        n, k = config.N, len(self.lmbdas)
        self.g_a = nn.Sequential(_conv(3, n, 9, 4), GDN(n), _conv(n, n, 5, 2), GDN(n), _conv(n, n, 5, 2), GDN(n))
        self.g_s = nn.Sequential(GDN(n, inverse=True), _deconv(n, n, 5, 2), GDN(n, inverse=True),
                                 _deconv(n, n, 5, 2), GDN(n, inverse=True), _deconv(n, 3, 9, 4))
        # log-gains start on the MSE rule of thumb (the best quantizer step shrinks like lmbda^-1/2) around
        # GAIN0: an untrained g_a gives latents of std ~0.25, which a unit step would round to zero, leaving
        # the decoder nothing to learn from (measured: with gain 1 at the middle point, PSNR sat at 19.5 dB
        # for the first 1000 steps).
        mid = math.log(self.lmbdas[k // 2])
        init = torch.tensor([math.log(GAIN0) + 0.5 * (math.log(l) - mid) for l in self.lmbdas])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, n).clone())
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, n).clone())
        self.priors = nn.ModuleList(FactorizedPrior(n) for _ in range(k))

    def entropy_models(self):
        return list(self.priors)

    def _gains(self, q: Tensor) -> tuple[Tensor, Tensor]:
        return self.log_gain[q].exp()[:, :, None, None], self.log_inv_gain[q].exp()[:, :, None, None]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Training path. Each sample of the batch gets a rate point, cycling so all points train equally."""
        b = x.shape[0]
        q = (torch.randint(len(self.lmbdas), (1,)) + torch.arange(b)) % len(self.lmbdas)
        gain, inv_gain = self._gains(q)
        y = self.g_a(x).float() * gain
        bits = torch.zeros(b, device=x.device)
        y_hat = torch.empty_like(y)
        with torch.autocast(device_type=x.device.type, enabled=False):
            for k in q.unique().tolist():
                idx = (q == k).nonzero().squeeze(1)
                _, likelihoods = self.priors[k](y[idx])
                bits = bits.index_add(0, idx, -torch.log2(likelihoods).sum(dim=(1, 2, 3)))
                # round on the grid the coder will use (offset by the channel's median), gradient straight through
                m = self.priors[k].quantiles[:, 0, 1].detach().view(1, -1, 1, 1)
                y_hat[idx] = y[idx] + (torch.round(y[idx] - m) + m - y[idx]).detach()
        x_hat = self.g_s(y_hat * inv_gain)
        lmbda = torch.tensor(self.lmbdas, device=x.device)[q]
        return {"x_hat": x_hat, "bits": bits, "lmbda": lmbda}

    # -- real coding ------------------------------------------------------------------------------
    def _latents(self, x: np.ndarray) -> tuple[Tensor, FactorizedPrior]:
        """The scaled latents of a padded image at this codec's rate point, and that point's density."""
        q = torch.tensor([self.config.quality - 1])
        gain, _ = self._gains(q)
        return self.g_a(to_tensor(x)) * gain, self.priors[q.item()]

    @torch.no_grad()
    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        y, prior = self._latents(x)
        return [prior.compress(y)]

    @torch.no_grad()
    def estimate_bits(self, x: np.ndarray) -> float:
        y, prior = self._latents(x)
        _, likelihoods = prior.eval()(y)
        return float(-torch.log2(likelihoods).sum())

    @torch.no_grad()
    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        h, w, _ = shape
        q = torch.tensor([self.config.quality - 1])
        _, inv_gain = self._gains(q)
        y_hat = self.priors[q.item()].decompress(chunks[0], (1, self.config.N, h // 16, w // 16))
        return from_tensor(self.g_s(y_hat * inv_gain))
