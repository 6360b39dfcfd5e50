"""Integer networks: a network whose output is the same number on every machine.

Ballé, Johnston, Minnen, "Integer networks for data compression with latent-variable models", ICLR 2019.
A hyperprior's decoder must compute the entropy parameters (scale indexes, means) exactly as the encoder did,
or the range decoder desynchronizes and the image decodes to garbage; float convolutions differ in the last
bit between CPUs, GPUs, libraries and thread counts. Only this network must be exact; the image synthesis
may stay in floating point.

The rule here: weights live on a grid of 2^-WEIGHT_BITS, biases and activations on a grid of 2^-ACT_BITS,
and every activation is rounded (half up) back onto its grid after each layer and clipped to +-CLIP. In
exact mode every tensor holds those grid values as integers in float64: each product and each partial sum
is then an integer below 2^53, which float64 represents exactly, so the sum is the same in any order on any
device (cuDNN is switched off there: its FFT and Winograd algorithms are not exact). Training runs the same
arithmetic in float32 with the rounding passed straight through (quantization-aware training), so what is
trained is what is coded.

Bound: inputs and activations below CLIP * 2^ACT_BITS = 2^24, weights below 2^(WEIGHT_BITS + 4), at most
2^13 terms per output: partial sums stay below 2^(24 + 12 + 13) = 2^49 < 2^53.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..threads import MAX_THREADS, coding_threads, parallel

WEIGHT_BITS = 8   # weights on a grid of 1/256
ACT_BITS = 8      # activations and biases on a grid of 1/256 (the quantization grid of the factorized z)
CLIP = 2.0 ** 16  # activations clipped to +-CLIP
MAX_TERMS = 2 ** 13  # products summed into one output (the bound above)
WEIGHT_CLIP = 16.0 - 2.0 ** -WEIGHT_BITS
# a checkerboard's 2x2 phases (row, column): the anchors (i + j even) and the rest
_PHASES_IN, _PHASES_OUT = ((0, 0), (1, 1)), ((0, 1), (1, 0))
PARALLEL_MACS = 10 ** 7  # an exact convolution of at least this many products is cut among the coding threads


def _round_half_up(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5)


def _ste(x: Tensor, q: Tensor) -> Tensor:
    return x + (q - x).detach()


def quantize_weight(w: Tensor) -> Tensor:
    """w on its grid (float, straight-through): the value exact mode uses."""
    w = w.clamp(-WEIGHT_CLIP, WEIGHT_CLIP)
    return _ste(w, _round_half_up(w * 2 ** WEIGHT_BITS) / 2 ** WEIGHT_BITS)


def quantize_activation(a: Tensor) -> Tensor:
    a = a.clamp(-CLIP, CLIP)
    return _ste(a, _round_half_up(a * 2 ** ACT_BITS) / 2 ** ACT_BITS)


class IntegerConv(nn.Module):
    """A conv (or transposed conv) on the integer grid: forward() in float with straight-through rounding
    (training), exact() on grid integers held in float64 (coding)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, transposed: bool = False):
        super().__init__()
        if cin * k * k > MAX_TERMS:
            raise ValueError(f"an integer conv sums at most {MAX_TERMS} products per output, not {cin} x {k}x{k}")
        cls = nn.ConvTranspose2d if transposed else nn.Conv2d
        extra = {"output_padding": stride - 1} if transposed else {}
        self.conv = cls(cin, cout, k, stride=stride, padding=k // 2, **extra)

    def _call(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        c = self.conv
        if isinstance(c, nn.ConvTranspose2d):
            return F.conv_transpose2d(x, w, b, c.stride, c.padding, c.output_padding)
        return F.conv2d(x, w, b, c.stride, c.padding)

    def forward(self, x: Tensor) -> Tensor:
        b = quantize_activation(self.conv.bias)
        return quantize_activation(self._call(x, quantize_weight(self.conv.weight), b))

    def _cached(self, name: str, make) -> Tensor:
        """make() as float64, for the current weights: kept as int16 (grid integers below 2^12) until the weights
        change (in place, their version moves; replaced, or converted by .to() or .half(), the tensor or its
        storage changes): coding would otherwise round every weight again for each image."""
        w = self.conv.weight
        key = (w, w._version, w.data_ptr(), w.dtype, w.device)
        cache = self.__dict__.setdefault("_exact_cache", {})
        hit = cache.get(name)
        if hit is None or hit[0][0] is not w or hit[0][1:] != key[1:]:
            hit = cache[name] = (key, make().to(torch.int16))
        return hit[1].double()

    def _weight_int(self) -> Tensor:
        return self._cached("weight", self._round_weight)

    def _round_weight(self) -> Tensor:
        """The weights' grid integers (|w| < 2^12), float64."""
        return torch.round(quantize_weight(self.conv.weight.detach()).double() * 2 ** WEIGHT_BITS)

    def _finish(self, acc: Tensor) -> Tensor:
        """The sums of products (float64 integers, overwritten) -> the output: the bias added, rounded onto the
        grid, clipped."""
        b = torch.round(quantize_activation(self.conv.bias).double() * 2 ** ACT_BITS)
        # in place (acc is the convolution's own output): a large tensor allocated per step costs more than the
        # arithmetic; integers below 2^53 and a power-of-two division, so exact in any order
        acc.add_((b * 2 ** WEIGHT_BITS + 2 ** (WEIGHT_BITS - 1)).to(acc.device).view(1, -1, 1, 1))
        return acc.div_(2 ** WEIGHT_BITS).floor_().clamp_(-CLIP * 2 ** ACT_BITS, CLIP * 2 ** ACT_BITS)

    @torch.no_grad()
    def exact(self, x_int: Tensor, trailing_zeros: int = 0) -> Tensor:
        """x_int: float64 integers (activations times 2^ACT_BITS) -> the same for the output. With
        `trailing_zeros`, x_int lacks the input's last channels, all zeros: their products (zero) are skipped."""
        w = self._weight_int().to(x_int.device)
        dim = int(isinstance(self.conv, nn.ConvTranspose2d))  # the weight's dimension of output channels
        if trailing_zeros < 0 or x_int.shape[1] + trailing_zeros != w.shape[1 - dim]:
            raise ValueError(f"{x_int.shape[1]} input channels and {trailing_zeros} zeros for {w.shape[1 - dim]}")
        if trailing_zeros:
            w = w.narrow(1 - dim, 0, x_int.shape[1]).contiguous()
        with torch.backends.cudnn.flags(enabled=False):
            return self._finish(_split_outputs(lambda part: self._call(x_int, part, None), w, dim, x_int))

    @torch.no_grad()
    def exact_checkerboard(self, x_int: Tensor) -> Tensor:
        """exact() of an x_int that is zero off the anchors of a checkerboard (positions (i + j) even), at the
        other positions (0 at the anchors): a checkerboard context model's pass. Stride-1 convolutions only.

        Split into the four phases of 2x2 blocks, the anchors are phases (0, 0) and (1, 1) and the outputs wanted
        phases (0, 1) and (1, 0); a tap d of the kernel takes an output of phase p from the input of phase
        (p + d) mod 2 at offset floor((p + d) / 2) of the half-resolution grid. For each output phase and anchor
        phase those offsets fill a rectangle (a 5x5 kernel's taps: 3x2 or 2x3), so each output phase is two
        convolutions at a quarter of the positions with only the taps that reach an anchor (a 5x5 kernel's 12 of
        25: 4.2x fewer products, none with the zeros). The same products are summed, as integers below 2^53, so
        the result is exact()'s."""
        c = self.conv
        r = c.kernel_size[0] // 2
        if (isinstance(c, nn.ConvTranspose2d) or c.stride != (1, 1) or c.kernel_size != (2 * r + 1,) * 2
                or c.padding != (r, r) or c.dilation != (1, 1) or c.groups != 1):
            raise ValueError("exact_checkerboard needs a square stride-1 convolution of odd size, 'same' padding")
        n, _, h, w = x_int.shape
        x = F.pad(x_int, (0, w % 2, 0, h % 2))  # whole 2x2 blocks (the padding is zero, as off the image)
        anchors = [x[:, :, qy::2, qx::2] for qy, qx in _PHASES_IN]
        pairs = []  # per output phase: (kernel, anchor phase padded so output (u, v) reads offsets y0..y1, x0..x1)
        for o, p in enumerate(_PHASES_OUT):
            pairs.append([])
            for i, q in enumerate(_PHASES_IN):
                taps, (y0, y1, x0, x1) = _phase_taps(r, p, q)
                if taps:  # none for a 1x1 kernel: no tap reaches an anchor
                    k = self._cached(f"checkerboard{o}{i}", lambda: self._phase_kernel(r, p, q)).to(x.device)
                    pairs[-1].append((k, F.pad(anchors[i], (-x0, x1, -y0, y1))))
        # the pieces: each output phase, its output channels cut in `per` parts where more threads code
        ways = _coding_ways(sum(k.numel() for pair in pairs for k, _ in pair) * anchors[0][0, 0].numel(), x)
        per = max(1, ways // len(_PHASES_OUT))

        def piece(cut: tuple[int, int]) -> Tensor:
            o, part = cut
            acc = x.new_zeros((n, c.out_channels, *anchors[0].shape[2:])).chunk(per, dim=1)[part]
            for k, a in pairs[o]:
                acc = acc + F.conv2d(a, k.chunk(per, dim=0)[part].contiguous())
            return acc

        cuts = [(o, part) for o in range(len(_PHASES_OUT)) for part in range(per)]
        with torch.backends.cudnn.flags(enabled=False):
            parts = parallel(piece, cuts, ways) if ways > 1 else [piece(cut) for cut in cuts]
        out = x.new_zeros((n, c.out_channels, *x.shape[2:]))
        for o, p in enumerate(_PHASES_OUT):
            out[:, :, p[0]::2, p[1]::2] = self._finish(torch.cat(parts[o * per:(o + 1) * per], dim=1))
        return out[:, :, :h, :w]

    def _phase_kernel(self, r: int, p: tuple[int, int], q: tuple[int, int]) -> Tensor:
        """exact_checkerboard's kernel from anchor phase q to output phase p: the taps of _phase_taps."""
        weight = self._round_weight()
        taps, (y0, y1, x0, x1) = _phase_taps(r, p, q)
        k = weight.new_zeros((*weight.shape[:2], y1 - y0 + 1, x1 - x0 + 1))
        for dy, dx in taps:
            k[:, :, (p[0] + dy) // 2 - y0, (p[1] + dx) // 2 - x0] = weight[:, :, dy + r, dx + r]
        return k


def _phase_taps(r: int, p: tuple[int, int], q: tuple[int, int]) -> tuple[list, tuple[int, int, int, int]]:
    """The taps (dy, dx) of a (2r+1)^2 kernel that take an output of phase p from an input of phase q, and the
    rectangle y0..y1, x0..x1 of half-resolution offsets floor((p + d) / 2) they fill (every one of it; none and
    an empty rectangle where no tap does)."""
    taps = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
            if (p[0] + dy) % 2 == q[0] and (p[1] + dx) % 2 == q[1]]
    oy, ox = [(p[0] + dy) // 2 for dy, _ in taps], [(p[1] + dx) // 2 for _, dx in taps]
    return taps, (min(oy, default=0), max(oy, default=-1), min(ox, default=0), max(ox, default=-1))


def _coding_ways(macs: int, x: Tensor) -> int:
    """Among how many threads an exact convolution of `macs` products on x's device is cut: the coding threads
    (at most MAX_THREADS) for many products on the CPU, else 1."""
    return min(coding_threads(), MAX_THREADS) if macs >= PARALLEL_MACS and x.device.type == "cpu" else 1


def _split_outputs(conv, w: Tensor, dim: int, x: Tensor) -> Tensor:
    """conv(w) of grid integers, w's output channels (its dimension `dim`) cut among the coding threads when
    the products are many and the CPU computes them: each output is the same exact sum wherever it is computed,
    so the cut changes only the speed (threads.py)."""
    ways = _coding_ways(x.numel() // x.shape[1] * w.numel(), x)
    if ways == 1:
        return conv(w)
    return torch.cat(parallel(conv, [part.contiguous() for part in w.chunk(ways, dim)]), dim=1)


class IntegerNetwork(nn.Sequential):
    """IntegerConv layers with ReLUs between them (a ReLU of grid integers is exact)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(quantize_activation(x))  # the input on the grid, as exact() requires

    @staticmethod
    def _grid(x: Tensor) -> Tensor:
        """x on the activation grid -> its grid integers, float64, clipped; ValueError if it is off the grid."""
        h = x.double() * 2 ** ACT_BITS
        if not bool(torch.equal(h, torch.round(h))):
            raise ValueError("integer network input is not on the 2^-ACT_BITS grid")
        return h.clamp(-CLIP * 2 ** ACT_BITS, CLIP * 2 ** ACT_BITS)

    def exact(self, x: Tensor, trailing_zeros: int = 0) -> Tensor:
        """x on the activation grid (any float dtype) -> the output on it, float64 in units of 2^-ACT_BITS.
        Raises ValueError if x is not on the grid (its values must come from the decoder's own integers).
        `trailing_zeros`: x lacks the input's last channels, all zeros (IntegerConv.exact skips them)."""
        h, zeros = self._grid(x), trailing_zeros
        for layer in self:
            if isinstance(layer, IntegerConv):
                h, zeros = layer.exact(h, zeros), 0
            else:
                h = torch.relu(h)  # zeros stay zeros
        return h

    def exact_checkerboard(self, x: Tensor) -> Tensor:
        """exact() of an x that is zero off a checkerboard's anchors, at the other positions (0 at the anchors),
        for a network of one convolution (IntegerConv.exact_checkerboard; a deeper network's later layers would
        need its outputs at the anchors too)."""
        if len(self) != 1 or not isinstance(self[0], IntegerConv):
            raise ValueError("exact_checkerboard needs a network of one IntegerConv")
        return self[0].exact_checkerboard(self._grid(x))
