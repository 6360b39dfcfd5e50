"""A Gaussian scale mixture per latent channel.

Theis, Shi, Cunningham, Huszár, "Lossy Image Compression with Compressive Autoencoders" (ICLR 2017),
sections 2.2 and 3, model the distribution of each channel's coefficients with a Gaussian scale mixture
(GSM) with 6 scales:

    p(x) = sum_k w_k N(x; 0, s_k^2),   w = softmax(logits),   s_k = max(exp(log_scale_k), 0.11)

The mass of a quantization bin is sum_k w_k [Phi((v + 1/2) / s_k) - Phi((v - 1/2) / s_k)], with Phi the
standard normal CDF. The density is symmetric about 0, so the median (the quantization offset) is 0 and
its quantiles follow from the widest scale in closed form: unlike the flexible density of factorized.py
it needs no auxiliary training. Training, quantization and the real coding with integer tables are those
of every tabulated density (see tabulated.py).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.special import erfc, ndtri

from ..nn.bound import lower_bound
from .tabulated import TabulatedDensity

# A narrower Gaussian puts all but ~5e-6 of its mass into the zero bin: narrowing it further changes
# nothing the coder sees, and the gradient of the bin masses with respect to the scale vanishes.
# (Ballé et al. 2018's Gaussian scale tables start at the same value.)
SCALE_BOUND = 0.11


def normal_cdf(x: Tensor) -> Tensor:
    """The standard normal CDF, precise in the lower tail.

    torch.special.ndtr computes (1 + erf(x / sqrt 2)) / 2, which cancels there: 4% off at x = -5 in
    float32 and 0 below about -8.3 even in float64. erfc has no such cancellation.
    """
    return 0.5 * erfc(-x / math.sqrt(2.0))


class GaussianScaleMixture(TabulatedDensity):
    """Zero-mean Gaussian scale mixture per channel of a latent y (NCHW), with real entropy coding.

    See `TabulatedDensity` for forward / compress / decompress; call `update_tables()` when training ends.
    """

    def __init__(self, channels: int, num_scales: int = 6, init_scale: float = 10.0, tail_mass: float = 1e-9):
        super().__init__(channels, tail_mass)
        if num_scales < 1 or init_scale <= 0:
            raise ValueError("GaussianScaleMixture needs num_scales >= 1 and init_scale > 0")
        # Equal weights on scales spread geometrically from init_scale (wide enough for the latents of an
        # untrained transform) down to 0.5 (a channel that is mostly 0).
        init = torch.linspace(math.log(init_scale), math.log(0.5), num_scales)
        self.log_scales = nn.Parameter(init.repeat(channels, 1))
        self.logits = nn.Parameter(torch.zeros(channels, num_scales))

    def _scales_and_weights(self, like: Tensor, detach: bool = False) -> tuple[Tensor, Tensor]:
        """The bounded scales and the mixture weights, (C, K, 1) each (with any leading dimensions of the
        parameters: latent._per_point stacks the rate points' densities), in like's dtype and on its device."""
        log_scales, logits = self.log_scales, self.logits
        if detach:
            log_scales, logits = log_scales.detach(), logits.detach()
        log_scales, logits = log_scales.to(like), logits.to(like)
        scales = lower_bound(torch.exp(log_scales), SCALE_BOUND)
        return scales[..., None], torch.softmax(logits, dim=-1)[..., None]

    def bin_mass(self, v: Tensor, detach: bool = False) -> Tensor:
        """P(v - 1/2 < x < v + 1/2) for v of shape (C, 1, M), without cancellation in the tails."""
        scales, weights = self._scales_and_weights(v, detach)
        # Above 0 both CDF values approach 1 and their difference loses all precision; there the same
        # difference by symmetry, Phi(-(v - 1/2)/s) - Phi(-(v + 1/2)/s), subtracts small, precise numbers.
        sign = torch.where(v > 0, -1.0, 1.0).to(v.dtype)
        upper = normal_cdf(sign * (v + 0.5) / scales)
        lower = normal_cdf(sign * (v - 0.5) / scales)
        return (weights * torch.abs(upper - lower)).sum(dim=-2, keepdim=True)

    def _tail_mass(self, below: Tensor, above: Tensor) -> Tensor:
        """P(x < below) + P(x > above) per channel, for float64 CPU tensors of shape (C,)."""
        scales, weights = (t[..., 0] for t in self._scales_and_weights(below, detach=True))
        # P(x > above) = Phi(-above / s): both terms are lower tails, so they keep their precision
        tails = normal_cdf(below[:, None] / scales) + normal_cdf(-above[:, None] / scales)
        return (weights * tails).sum(dim=1)

    def _quantiles(self) -> Tensor:
        """(-t, 0, t) per channel, (C, 3) float64 on the CPU, with P(x > t) <= tail_mass / 2.

        Each component is at most as wide as the widest, so beyond the widest one's 1 - tail_mass/2
        quantile t each component, and so the mixture, has at most tail_mass/2 of its mass.
        """
        scales, _ = self._scales_and_weights(torch.zeros((), dtype=torch.float64), detach=True)
        z = -ndtri(torch.tensor(self.tail_mass / 2, dtype=torch.float64))
        t = z * scales[:, :, 0].amax(dim=1)
        return torch.stack([-t, torch.zeros_like(t), t], dim=1)
