"""Theis, Shi, Cunningham, Huszár, "Lossy Image Compression with Compressive Autoencoders", ICLR 2017.

    x -> normalize (fixed per-channel centre and scale) -> mirror-pad 16 px
      -> [conv 5x5 /2, 64] lrelu -> [conv 5x5 /2, 128] lrelu -> 3 x residual block (128)
      -> [conv 5x5 /2, 96] -> drop the 2 latent rows/columns on each side that came from the padding -> y
    y * scale[q] -> round (identity gradient) -> y_hat -> range coder with the Gaussian scale mixture of
                    rate point q (forward_adaptive, beyond the paper: per channel the cheapest of
                    the rate points' mixtures, the choices coded first)      (the file's one chunk)
    y_hat * inv_scale[q] -> [subpixel conv 3x3, 128 x 4 -> x2] lrelu -> 3 x residual block (128)
      -> [subpixel conv 3x3, 64 x 4 -> x2] lrelu -> [subpixel conv 3x3, 3 x 4 -> x2] -> denormalize -> clip

96 coefficient channels at 1/8 resolution, as in the paper (1.5 coefficients per pixel). Convolutions are
zero-padded; the mirror padding of the input gives the border coefficients real image context instead.
A residual block is conv 3x3 -> lrelu -> conv 3x3, added to its input. The sub-pixel convolutions
(Shi et al. 2016) upsample by a convolution to 4x the channels and a reorganization of channels into
space (depth-to-space).

Rate, as in the paper: one model is trained at the highest rate, with an incremental binary mask over
the coefficient channels (training opens them a few at a time, which the paper found to help), then
every other rate point comes from fine-tuning only per-coefficient-channel scales (y is multiplied by
them before rounding and by learned inverse scales after) and that point's entropy model, with the transforms frozen:

    neuralcodecs train theis2017 --stage transforms ...    # all parameters, top rate point, mask opening
    neuralcodecs train theis2017 --stage scales --resume   # scales and GSMs of every rate point

Beyond the paper, a third stage trains everything at every rate point at once (each sample of a batch at one
point, as balle2017 always trains): transforms trained only at the top rate serve the middle rate points,
1/2 to 1/4 of its bits, least well, and this stage lets the shared transforms serve them all:

    neuralcodecs train theis2017 --stage joint --resume    # all parameters, every rate point
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..entropy.gsm import GaussianScaleMixture
from ..entropy.latent import FactorizedLatentCodec
from ..learned import VariableRateCodec, forward_adaptive_setting, refine_setting
from ..nn import conv
from ..codec import check_index_quality
from ..registry import register

# The transforms train at the last (highest-rate) lambda; the others only pick where the scales stage puts the
# lower rate points, spaced ~2.5x apart down to ~0.1 bpp (judged by balle2017's rates). The top is below
# balle2017's: transforms trained at its top lambda were no better than jpeg, and the scales stage had to stretch
# them far down in rate to reach the range that matters here (README: "Why the constants are what they are").
LMBDAS = (0.0003, 0.0007, 0.0018, 0.0045, 0.011, 0.028)
# Per-channel mean and standard deviation of the training photos (2120 photos, 152 Mpx, 0..255)
CENTRE = (121.24, 121.15, 111.50)
SPREAD = (66.49, 65.04, 72.97)
PAD = 16           # mirror padding of the input, pixels (2 coefficients at 1/8 resolution)
MASK_START = 8     # incremental training: coefficient channels open at the start ...
MASK_STEP = 8      # ... and opened every MASK_EVERY steps after that
MASK_EVERY = 1000


class Residual(nn.Sequential):
    def __init__(self, n: int):
        super().__init__(conv(n, n, 3), nn.LeakyReLU(0.2), conv(n, n, 3))

    def forward(self, x: Tensor) -> Tensor:
        return x + super().forward(x)


def _subpixel(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv(cin, 4 * cout, 3), nn.PixelShuffle(2))


@register("theis2017")
class Theis2017(VariableRateCodec):
    __doc__ = __doc__  # the module's: the paper and the data flow, for help()
    quality_meaning = "rate point 1-6 of one model (higher: more bits)"
    @dataclass(frozen=True)
    class Config:
        quality: int = 4  # rate point 1..6 (lambda = LMBDAS[quality - 1])
        N: int = 128
        M: int = 96
        refine: int = refine_setting()  # encoder-side steps on the latents (learned.LatentRefinement)
        forward_adaptive: bool = forward_adaptive_setting()  # per channel the cheapest rate point's GSM

        def __post_init__(self):
            check_index_quality("theis2017", self.quality, len(LMBDAS))

    qualities: ClassVar[tuple] = tuple(range(1, len(LMBDAS) + 1))
    lmbdas = LMBDAS
    stages = ("transforms", "scales", "joint")
    latent_stride = 8
    pad_to = 8
    # tiles' context (learned.py): a latent of g_a reads pixels 38 before to 31 after its own 8, the pixels of g_s
    # read latents 5 before to 5 after (measured)
    analysis_margin = 40
    synthesis_margin = 6
    min_side = PAD + 8  # reflect padding needs more pixels than it pads

    def __init__(self, config, name=None, lmbdas=None):
        super().__init__(config, name, lmbdas)
        n, m = config.N, config.M
        self.register_buffer("centre", torch.tensor(CENTRE).view(1, 3, 1, 1) / 255)
        self.register_buffer("spread", torch.tensor(SPREAD).view(1, 3, 1, 1) / 255)
        self.g_a = nn.Sequential(conv(3, n // 2, 5, 2), nn.LeakyReLU(0.2), conv(n // 2, n, 5, 2), nn.LeakyReLU(0.2),
                                 Residual(n), Residual(n), Residual(n), conv(n, m, 5, 2))
        self.g_s = nn.Sequential(_subpixel(m, n), nn.LeakyReLU(0.2), Residual(n), Residual(n), Residual(n),
                                 _subpixel(n, n // 2), nn.LeakyReLU(0.2), _subpixel(n // 2, 3))
        # an untrained g_a gives coefficients of std ~0.09 on normalized photos: start with gains that make
        # the top rate point's about 3.5 (see balle2017 for why a unit step on tiny latents stalls training)
        self.latent_codec = FactorizedLatentCodec([GaussianScaleMixture(m) for _ in self.lmbdas],
                                                  config.forward_adaptive)
        self._init_gains(m, gain0=20.0)
        # incremental training: how many steps of stage "transforms" have run (saved, so resume is exact)
        self.register_buffer("mask_steps", torch.zeros((), dtype=torch.int64))
        self.set_stage("transforms")

    def set_stage(self, stage: str) -> None:
        super().set_stage(stage)
        top = len(self.lmbdas) - 1
        self.train_points = [top] if stage == "transforms" else list(range(len(self.lmbdas)))
        for module in (self.g_a, self.g_s):
            module.requires_grad_(stage != "scales")

    def analysis(self, x: Tensor) -> Tensor:
        x = F.pad((x - self.centre) / self.spread, (PAD,) * 4, mode="reflect")
        c = PAD // self.latent_stride
        return self.g_a(x)[:, :, c:-c, c:-c]

    def training_mask(self, channels: int, device: torch.device) -> Tensor | None:
        """Stage "transforms": the paper's incremental mask, MASK_STEP more channels every MASK_EVERY steps."""
        if self.stage != "transforms":
            return None
        open_channels = MASK_START + MASK_STEP * (int(self.mask_steps) // MASK_EVERY)
        self.mask_steps += 1
        return (torch.arange(channels, device=device) < open_channels).float()

    def synthesis(self, y_hat: Tensor) -> Tensor:
        x_hat = self.g_s(y_hat) * self.spread + self.centre
        # clip to the pixel range; in training the gradient passes through as if unclipped, so saturated
        # pixels still teach the decoder
        return x_hat.clamp(0, 1) + (x_hat - x_hat.detach())
