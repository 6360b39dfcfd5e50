"""The fully factorized learned prior ("entropy bottleneck"): a flexible non-parametric density.

Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression with a scale hyperprior"
(ICLR 2018), appendix 6.1, gives the flexible non-parametric density that the learned codec of Ballé,
Laparra, Simoncelli, "End-to-end optimized image compression" (ICLR 2017) models each latent channel
with. Per channel, a monotone cumulative c: R -> (0, 1) is a small chain of 1-D -> ... -> 1-D layers

    f_k(x) = g_k(softplus(H_k) x + b_k),   g_k(x) = x + tanh(a_k) * tanh(x)   (k < K)
    c(x)   = sigmoid(softplus(H_K) x + b_K)

softplus keeps every matrix positive and tanh(a_k) >= -1 keeps each g_k non-decreasing, so c is monotone.
The probability of a quantized value is the mass of its bin, p(y_hat) = c(y_hat + 1/2) - c(y_hat - 1/2).

The density has no closed-form quantiles, so the median (the quantization offset) and the range the coding
tables cover are learned alongside it (see `aux_loss`). Training, quantization and the real coding with
integer tables are those of every tabulated density (see tabulated.py).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .tabulated import TabulatedDensity


class FactorizedPrior(TabulatedDensity):
    """Learned flexible per-channel density of a latent y (NCHW) with real entropy coding.

    See `TabulatedDensity` for forward / compress / decompress. Train with loss = lmbda * distortion + bits
    + aux_loss(); call `update_tables()` when training ends.
    """

    def __init__(self, channels: int, filters: Sequence[int] = (3, 3, 3), init_scale: float = 10.0,
                 tail_mass: float = 1e-9):
        super().__init__(channels, tail_mass)
        if init_scale <= 0 or any(f < 1 for f in filters):
            raise ValueError("FactorizedPrior needs filters >= 1 and init_scale > 0")
        self.filters = tuple(filters)

        dims = (1,) + self.filters + (1,)
        # Each of the K layers scales its input by about 1/scale at initialization (softplus(H) = 1 /
        # (scale * fan_in), gates closed), so the initial c is a sigmoid about init_scale wide: broad
        # enough to cover the latents of an untrained transform.
        scale = float(init_scale) ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[k]))  # softplus^-1
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[k + 1], 1).uniform_(-0.5, 0.5)))
            if k < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

        # The (tail_mass/2, 1/2, 1 - tail_mass/2) quantiles of each channel's density, learned by
        # aux_loss: they give the median used for quantization and the range the tables must cover.
        self.quantiles = nn.Parameter(torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1))
        t = math.log(2.0 / tail_mass - 1.0)  # logit of 1 - tail_mass/2
        self.register_buffer("_target", torch.tensor([-t, 0.0, t]), persistent=False)

    def _logits_cumulative(self, x: Tensor, detach: bool = False) -> Tensor:
        """logit(c(x)) for x of shape (C, 1, M), in x's dtype and on x's device."""
        def p(t: Tensor) -> Tensor:
            t = t.detach() if detach else t
            return t.to(device=x.device, dtype=x.dtype)

        for k, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(p(matrix)), x) + p(bias)
            if k < len(self.factors):
                x = x + torch.tanh(p(self.factors[k])) * torch.tanh(x)
        return x

    def bin_mass(self, v: Tensor, detach: bool = False) -> Tensor:
        """c(v + 1/2) - c(v - 1/2) for v of shape (C, 1, M), without cancellation in the tails."""
        lower = self._logits_cumulative(v - 0.5, detach)
        upper = self._logits_cumulative(v + 0.5, detach)
        # In the upper tail both c values are close to 1 and their difference loses all precision;
        # there 1 - c(x) = sigmoid(-logit) is small and precise, so subtract those instead.
        sign = torch.where(lower + upper > 0, -1.0, 1.0).to(v.dtype)
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def _tail_mass(self, below: Tensor, above: Tensor) -> Tensor:
        """c(below) + 1 - c(above), per channel, for float64 CPU tensors of shape (C,)."""
        below = self._logits_cumulative(below[:, None, None], detach=True)[:, 0, 0]
        above = self._logits_cumulative(above[:, None, None], detach=True)[:, 0, 0]
        return torch.sigmoid(below) + torch.sigmoid(-above)

    def _quantiles(self) -> Tensor:
        """The learned quantiles (see aux_loss), (C, 3) float64 on the CPU."""
        return self.quantiles.detach().to("cpu", torch.float64)[:, 0, :]

    def aux_loss(self) -> Tensor:
        """L1 distance of logit(c(quantiles)) from the logits of (tail_mass/2, 1/2, 1 - tail_mass/2).

        Only the quantiles learn from it (the density is detached), so it can simply be added to the
        training loss; give `quantiles` a larger learning rate than the density if training is short.
        """
        logits = self._logits_cumulative(self.quantiles, detach=True)
        return torch.abs(logits - self._target.to(logits.dtype)).sum()

    def aux_parameters(self) -> list[nn.Parameter]:
        return [self.quantiles]
