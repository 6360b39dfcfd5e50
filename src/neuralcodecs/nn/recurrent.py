"""Convolutional recurrent cells and the binarizer of Toderici et al.'s recurrent codecs.

Toderici et al., "Variable Rate Image Compression with Recurrent Neural Networks" (ICLR 2016) and "Full
Resolution Image Compression with Recurrent Neural Networks" (CVPR 2017). Both code an image in
iterations; each iteration's encoder, binarizer and decoder carry state from the previous iteration in
convolutional recurrent cells, where the gates are convolutions of the input and of the hidden state:

    LSTM:  [i, f, o, g] = W_x * x + W_h * h        c' = sigmoid(f) c + sigmoid(i) tanh(g)
                                                    h' = sigmoid(o) tanh(c')
    GRU:   [z, r] = sigmoid(W_xz,r * x + W_hz,r * h)   h~ = tanh(W_x * x + W_h * (r h))
                                                    h' = (1 - z) h + z h~

(* is a convolution; W_x may downsample with a stride, W_h keeps the size). A cell's state is None at the
first iteration and is then created as zeros of the right shape.

The binarizer maps an encoder's output to {-1, 1}: a 1x1 convolution and tanh give x in (-1, 1); in
training b = 1 with probability (1 + x) / 2, else -1 (so E[b] = x), and the gradient passes straight
through as if b were x; at coding time b = sign(x), with sign(0) = 1.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvLSTMCell(nn.Module):
    def __init__(self, cin: int, hidden: int, kernel: int = 3, stride: int = 1, hidden_kernel: int = 1):
        super().__init__()
        self.hidden = hidden
        self.conv_x = nn.Conv2d(cin, 4 * hidden, kernel, stride=stride, padding=kernel // 2)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, hidden_kernel, padding=hidden_kernel // 2, bias=False)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        gx = self.conv_x(x)
        if state is None:
            h = c = gx.new_zeros(gx.shape[0], self.hidden, *gx.shape[2:])
        else:
            h, c = state
        i, f, o, g = (gx + self.conv_h(h)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class ConvGRUCell(nn.Module):
    def __init__(self, cin: int, hidden: int, kernel: int = 3, stride: int = 1, hidden_kernel: int = 1):
        super().__init__()
        self.hidden = hidden
        self.conv_x = nn.Conv2d(cin, 3 * hidden, kernel, stride=stride, padding=kernel // 2)
        self.conv_h = nn.Conv2d(hidden, 2 * hidden, hidden_kernel, padding=hidden_kernel // 2, bias=False)
        self.conv_rh = nn.Conv2d(hidden, hidden, hidden_kernel, padding=hidden_kernel // 2, bias=False)

    def forward(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        xz, xr, xn = self.conv_x(x).chunk(3, dim=1)
        h = xz.new_zeros(xz.shape[0], self.hidden, *xz.shape[2:]) if state is None else state
        hz, hr = self.conv_h(h).chunk(2, dim=1)
        z, r = torch.sigmoid(xz + hz), torch.sigmoid(xr + hr)
        h = (1 - z) * h + z * torch.tanh(xn + self.conv_rh(r * h))
        return h, h


class Binarizer(nn.Module):
    """x -> 1x1 conv -> tanh -> {-1, 1} (stochastic in training, sign when coding); `bits` channels."""

    def __init__(self, cin: int, bits: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, bits, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.tanh(self.conv(x))
        if self.training:
            b = torch.where(torch.rand_like(x) < (1 + x) / 2, 1.0, -1.0)
            return b + (x - x.detach())  # exactly b, with the gradient of x
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
