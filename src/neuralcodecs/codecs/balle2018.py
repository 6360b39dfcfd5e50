"""Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression with a scale hyperprior", ICLR 2018;
its hyper-synthesis as an integer network after Ballé, Johnston, Minnen, "Integer networks for data
compression with latent-variable models", ICLR 2019.

    x -> g_a (balle2017's: 3 x [conv /2-/4, GDN]) -> y * gain[q]
      |y| -> h_a: [conv 3x3, relu] [conv 5x5 /2, relu] [conv 5x5 /2] -> z -> round -> z_hat
             z_hat --(learned factorized density of rate point q)--> z
      z_hat -> h_s (integer network): [deconv 5x5 x2, relu] [deconv 5x5 x2, relu] [conv 3x3] -> scale index
      y -> round -> y_hat --(Gaussian, scale from a fixed table by that index)--> y
                  (conditional, beyond the paper: a logistic of that scale in the Gaussian's place)
                  (forward_adaptive, beyond the paper: per channel a shift of the indexes, written first)
      the file's one chunk, a range-coded string: [conditional | z | shifts | y]
    y_hat * inv_gain[q] -> g_s (balle2017's: 3 x [IGDN, deconv x2-x4]) -> x_hat

The transforms have balle2017's shape, so training starts from its shipped transforms and gains
(`neuralcodecs train balle2018 --init codec:balle2017 ...`): only h_a, h_s and the z densities start from
scratch. As in balle2017, one model serves every rate point through per-channel gains (Cui et al. 2021).
h_s runs on integers (nn/integer.py), so the scale indexes, and with them the range decoder, agree bit for
bit on any machine and thread count; g_s stays in floating point. Images are padded to multiples of 64 so
that z is a whole 1/64 of the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..codec import check_index_quality
from ..entropy.conditional import check_conditional
from ..entropy.factorized import FactorizedPrior
from ..entropy.latent import HyperpriorLatentCodec
from ..learned import (VariableRateCodec, conditional_setting, forward_adaptive_setting,
                       refine_setting)
from ..nn import conv
from ..nn.integer import IntegerConv, IntegerNetwork
from ..registry import register
from .balle2017 import GAIN0, LMBDAS, analysis_transform, synthesis_transform


def hyper_analysis(n: int, m: int) -> nn.Sequential:
    """h_a: y (M channels) -> z (N channels at 1/4 of y's size)."""
    return nn.Sequential(conv(m, n, 3, 1), nn.ReLU(), conv(n, n, 5, 2), nn.ReLU(), conv(n, n, 5, 2))


def hyper_synthesis(n: int, out: int) -> IntegerNetwork:
    """h_s, an integer network: z_hat (N channels) -> `out` channels at y's size."""
    return IntegerNetwork(IntegerConv(n, n, 5, 2, transposed=True), nn.ReLU(),
                          IntegerConv(n, n, 5, 2, transposed=True), nn.ReLU(), IntegerConv(n, out, 3, 1))


@register("balle2018")
class Balle2018(VariableRateCodec):
    __doc__ = __doc__  # the module's: the paper and the data flow, for help()
    quality_meaning = "rate point 1-10 of one model (higher: more bits)"
    @dataclass(frozen=True)
    class Config:
        quality: int = 7  # rate point 1..10 (lambda = LMBDAS[quality - 1])
        N: int = 128  # channels of the hidden stages (balle2017's)
        M: int = 192  # channels of the latent y (balle2017's)
        refine: int = refine_setting()  # encoder-side steps on the latents (learned.LatentRefinement)
        forward_adaptive: bool = forward_adaptive_setting()  # per channel a shift of the scale indexes
        conditional: str = conditional_setting()  # y's density given its scale: "logistic" or "gaussian"

        def __post_init__(self):
            check_index_quality("balle2018", self.quality, len(LMBDAS))
            check_conditional(self.conditional)

    qualities: ClassVar[tuple] = tuple(range(1, len(LMBDAS) + 1))
    lmbdas = LMBDAS
    pad_to = 64

    def __init__(self, config, name=None, lmbdas=None):
        super().__init__(config, name, lmbdas)
        n, m = config.N, config.M
        self.g_a, self.g_s = analysis_transform(n, m), synthesis_transform(n, m)
        self.latent_codec = self._latent_codec(n, m, config.forward_adaptive, config.conditional)
        self._init_gains(m, GAIN0)

    def _latent_codec(self, n: int, m: int, forward_adaptive: bool, conditional: str) -> HyperpriorLatentCodec:
        return HyperpriorLatentCodec(hyper_analysis(n, m), hyper_synthesis(n, m),
                                     [FactorizedPrior(n) for _ in self.lmbdas], forward_adaptive, conditional)
