"""Ballé, Laparra, Simoncelli, "End-to-end Optimized Image Compression", ICLR 2017.

    x -> g_a: [conv 9x9 /4, GDN] [conv 5x5 /2, GDN] [conv 5x5 /2, GDN] -> y      (M channels at 1/16 size)
    y * gain[q] -> round (training: + uniform noise) -> y_hat -> range coder with the learned per-channel
                   density of rate point q (forward_adaptive, beyond the paper: per channel the cheapest
                   of the rate points' densities, the choices coded first)     (the file's one chunk)
    y_hat * inv_gain[q] -> g_s: [IGDN, deconv 5x5 x2] [IGDN, deconv 5x5 x2] [IGDN, deconv 9x9 x4] -> x_hat

The transforms are the paper's three stages (the first with a 9x9 kernel and 4x downsampling, the next two
5x5 with 2x). The hidden stages have N = 128 channels, the paper's width for grayscale (it used 192 for
RGB), because every step of training here runs on two CPU cores and the stages at 1/4 and 1/8 size are
most of its cost. The latent y has M = 192 channels, the paper's RGB width: M is the dimension of the
bottleneck (192 numbers per 16x16x3 = 768 pixel values), and it, not the bits, caps the quality at high
rates (Ballé et al. 2018 raise M from 192 to 320 for their top rates for this reason), while the last
stage at 1/16 size costs little (the manifest's training command records how the shipped model got there).

Rate: where the paper trains one model per lambda, this codec trains ONE model for all rate points with
per-point channel gains (the "gain units" of Cui et al., CVPR 2021) and one learned density per point:
quality q scales y by gain[q] before rounding and by the learned inverse gain inv_gain[q] (near 1 / gain[q])
after, so a larger gain means a finer quantizer. Sharing the transforms makes each training step serve every
rate, which is what a 2-core training budget needs; the gains and densities add only 2 x M + M x ~60
parameters per point.

Quantization in training: the rate term sees y + uniform noise (the paper's relaxation); the synthesis
sees round(y) with a straight-through gradient (Minnen & Singh 2020's mixed quantization), so that the
decoder trains on exactly what it will decode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..entropy.factorized import FactorizedPrior
from ..entropy.latent import FactorizedLatentCodec
from ..learned import VariableRateCodec, forward_adaptive_setting, refine_setting
from ..nn import GDN, conv, deconv
from ..codec import check_index_quality
from ..registry import register

# The paper's rate points (those of the published curves) and three below them: one model shares its transforms
# across all rate points, and at the paper's lowest lambda it sat well above the rate of the paper's models, so
# reaching about 0.1 bpp needs lower lambdas (README: "Why the constants are what they are").
LMBDAS = (0.00025, 0.0005, 0.001, 0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932)
# Initial gain of the middle rate point: an untrained g_a gives latents much smaller than a unit step, which
# would round them to zero, leaving the decoder nothing to learn from (README: "Why the constants are what they are").
GAIN0 = 8.0



def analysis_transform(n: int, m: int) -> nn.Sequential:
    """g_a: 3 x [conv (9x9 /4, then 5x5 /2), GDN] from RGB to M channels at 1/16 size."""
    return nn.Sequential(conv(3, n, 9, 4), GDN(n), conv(n, n, 5, 2), GDN(n), conv(n, m, 5, 2), GDN(m))


def synthesis_transform(n: int, m: int) -> nn.Sequential:
    """g_s: 3 x [IGDN, deconv (5x5 x2, then 9x9 x4)] back to RGB."""
    return nn.Sequential(GDN(m, inverse=True), deconv(m, n, 5, 2), GDN(n, inverse=True),
                         deconv(n, n, 5, 2), GDN(n, inverse=True), deconv(n, 3, 9, 4))


@register("balle2017")
class Balle2017(VariableRateCodec):
    __doc__ = __doc__  # the module's: the paper and the data flow, for help()
    quality_meaning = "rate point 1-10 of one model (higher: more bits)"
    @dataclass(frozen=True)
    class Config:
        quality: int = 7  # rate point 1..10 (lambda = LMBDAS[quality - 1])
        N: int = 128  # channels of the hidden stages
        M: int = 192  # channels of the latent y
        refine: int = refine_setting()  # encoder-side steps on the latents (learned.LatentRefinement)
        forward_adaptive: bool = forward_adaptive_setting()  # per channel the cheapest rate point's table

        def __post_init__(self):
            check_index_quality("balle2017", self.quality, len(LMBDAS))

    qualities: ClassVar[tuple] = tuple(range(1, len(LMBDAS) + 1))
    lmbdas = LMBDAS
    # LatentRefinement gains little here, far less than for the hyperprior codecs (see VariableRateCodec.refine_lr),
    # and at their learning rate it costs bytes, hence a lower one (README: "Why the constants are what they are")
    refine_lr = 1e-3

    def __init__(self, config, name=None, lmbdas=None):
        super().__init__(config, name, lmbdas)
        n, m = config.N, config.M
        self.g_a, self.g_s = analysis_transform(n, m), synthesis_transform(n, m)
        self.latent_codec = FactorizedLatentCodec([FactorizedPrior(m) for _ in self.lmbdas], config.forward_adaptive)
        self._init_gains(m, GAIN0)
