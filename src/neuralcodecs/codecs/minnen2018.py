"""Minnen, Ballé, Toderici, "Joint Autoregressive and Hierarchical Priors for Learned Image Compression",
NeurIPS 2018, with the checkerboard context of He, Zheng, Sun, Wang, Qin, "Checkerboard Context Model for
Efficient Learned Image Compression", CVPR 2021, and integer entropy-parameter networks (Ballé, Johnston,
Minnen, ICLR 2019).

    x -> g_a (balle2017's) -> y * gain[q]
      y / gain[q] -> h_a: [conv 3x3, relu] [conv 5x5 /2, relu] [conv 5x5 /2] -> z -> round
                                                                   --(factorized, point q)--> z
      z_hat -> h_s (integer): [deconv 5x5 x2, relu] [deconv 5x5 x2, relu] [conv 3x3] -> psi (2M channels)
      anchors (checkerboard half of y):  (mu0, scale index) = e(psi, 0)                           --> anchors
      the rest:                          (mu0, scale index) = e(psi, g_ctx(y_hat anchors / gain[q])) --> the rest
         g_ctx: conv 5x5 (integer); e: 3 x [conv 1x1] with relus (integer)
      mu = mu0 * gain[q], index + log(gain[q]) / LOG_STEP (exact: entropy/latent.py)
      y_hat = round(y - mu) + mu
      (forward_adaptive, beyond the paper: per channel a shift of the scale indexes, written before the anchors;
       conditional, beyond it too: y coded with a logistic of each scale in place of the paper's Gaussian)
      the file's one chunk, a range-coded string: [conditional | z | shifts | anchors | the rest]
    y_hat * inv_gain[q] -> g_s (balle2017's) -> x_hat

The serial raster context of the paper decodes one latent position at a time; the checkerboard's two passes
decode in parallel at almost the same rate (He et al. report ~0.1-0.3 dB). The transforms have balle2017's
shape, so training starts from a trained codec's (`--init codec:balle2018`: its transforms, gains, z
densities, h_a and h_s but for its last layer; e and g_ctx start from scratch). Images are padded to
multiples of 64.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..codec import check_index_quality
from ..entropy.conditional import check_conditional
from ..entropy.factorized import FactorizedPrior
from ..entropy.latent import CheckerboardLatentCodec
from ..nn.integer import IntegerConv, IntegerNetwork
from ..registry import register
from .balle2017 import LMBDAS
from .balle2018 import Balle2018, hyper_analysis, hyper_synthesis


@register("minnen2018")
class Minnen2018(Balle2018):
    __doc__ = __doc__  # the module's: the paper and the data flow, for help()

    @dataclass(frozen=True)
    class Config(Balle2018.Config):
        def __post_init__(self):
            check_index_quality("minnen2018", self.quality, len(LMBDAS))
            check_conditional(self.conditional)

    def _latent_codec(self, n: int, m: int, forward_adaptive: bool, conditional: str) -> CheckerboardLatentCodec:
        g_ctx = IntegerNetwork(IntegerConv(m, 2 * m, 5, 1))
        e = IntegerNetwork(IntegerConv(4 * m, 640, 1), nn.ReLU(), IntegerConv(640, 512, 1), nn.ReLU(),
                           IntegerConv(512, 2 * m, 1))
        return CheckerboardLatentCodec(hyper_analysis(n, m), hyper_synthesis(n, 2 * m), g_ctx, e,
                                       [FactorizedPrior(n) for _ in self.lmbdas], forward_adaptive, conditional)
