"""Generalized divisive normalization (GDN) and its inverse (IGDN).

Ballé, Laparra, Simoncelli, "Density modeling of images using a generalized normalization
transformation" (ICLR 2016) introduced GDN; "End-to-end optimized image compression" (ICLR 2017) uses
GDN in the analysis transform g_a and its approximate inverse IGDN in the synthesis transform g_s:

    GDN:   y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)
    IGDN:  y_i = x_i * sqrt(beta_i + sum_j gamma_ij x_j^2)

beta and gamma must stay positive (beta > 0 keeps the division finite). As in the papers they are stored
reparameterized, p = sqrt(value + pedestal), and bounded below with `lower_bound`: optimizing the
square root spreads the effective learning rate more evenly, the small pedestal keeps the gradient of
the square finite near zero, and the bound keeps beta >= beta_min and gamma >= 0.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bound import lower_bound

_REPARAM_OFFSET = 2.0 ** -18
_PEDESTAL = _REPARAM_OFFSET ** 2


class GDN(nn.Module):
    """GDN (or IGDN with `inverse=True`) over the channels of an NCHW tensor.

    The sum over j is a 1x1 convolution with weight gamma (out channel i, in channel j) and bias beta.
    The normalization is always computed in float32, also under autocast: squaring bfloat16 values and
    summing them loses too much precision, and the square root of a slightly wrong denominator is what
    every later layer sees. The result is returned in the input's dtype and memory format.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        if channels < 1 or beta_min <= 0 or gamma_init < 0:
            raise ValueError("GDN needs channels >= 1, beta_min > 0 and gamma_init >= 0")
        self.channels = channels
        self.inverse = inverse
        self.beta_min = beta_min
        self._beta_bound = math.sqrt(beta_min + _PEDESTAL)
        self.beta_param = nn.Parameter(torch.empty(channels))
        self.gamma_param = nn.Parameter(torch.empty(channels, channels))
        # beta = 1 and gamma = gamma_init * I: at initialization each channel is only normalized by its
        # own magnitude, a mild, well-conditioned start.
        self.beta = torch.ones(channels)
        self.gamma = gamma_init * torch.eye(channels)

    @property
    def beta(self) -> Tensor:
        """The effective beta (>= beta_min), differentiable w.r.t. `beta_param`."""
        return lower_bound(self.beta_param, self._beta_bound) ** 2 - _PEDESTAL

    @beta.setter
    def beta(self, value: Tensor) -> None:
        value = torch.as_tensor(value, dtype=self.beta_param.dtype).expand(self.channels)
        with torch.no_grad():
            self.beta_param.copy_(torch.sqrt(torch.clamp(value, min=self.beta_min) + _PEDESTAL))

    @property
    def gamma(self) -> Tensor:
        """The effective gamma (>= 0), gamma[i, j] weighting x_j^2 in the normalization of x_i."""
        return lower_bound(self.gamma_param, _REPARAM_OFFSET) ** 2 - _PEDESTAL

    @gamma.setter
    def gamma(self, value: Tensor) -> None:
        value = torch.as_tensor(value, dtype=self.gamma_param.dtype).expand(self.channels, self.channels)
        with torch.no_grad():
            self.gamma_param.copy_(torch.sqrt(torch.clamp(value, min=0.0) + _PEDESTAL))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"GDN({self.channels}) expects NCHW input with {self.channels} channels, "
                             f"got shape {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            x32 = x.float()
            gamma = self.gamma.float()[:, :, None, None]
            norm = F.conv2d(x32 * x32, gamma, self.beta.float())
            y = x32 * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.channels}, inverse={self.inverse}, beta_min={self.beta_min}"
