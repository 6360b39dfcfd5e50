"""Convolutions that keep the image size rules of the transform codecs: a k x k conv with stride s maps H to
H / s (padding k // 2), and its transposed twin maps H back to H * s (output_padding s - 1)."""
from __future__ import annotations

from torch import nn


def conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int, stride: int = 1) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)
