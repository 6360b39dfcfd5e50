"""CocoNet: Bricman, Ionescu, "CocoNet: A Deep Neural Network for Mapping Pixel Coordinates to Color
Values", ICONIP 2018; used as a codec the way COIN does (Dupont, Goliński, Alizadeh, Teh, Doucet, "COIN:
COmpression with Implicit Neural representations", 2021), with the quantization-aware fitting and entropy
coding of the weights of Strümpler, Postels, Yang, Van Gool, Tombari, "Implicit Neural Representations for
Image Compression" (ECCV 2022).

    encode: f: (x, y) in [-1, 1]^2 -> (r, g, b), `depth` fully-connected layers of `width` units, fitted to
            this one image: Adam on MSE over random pixel batches (seeded), learning rate on a cosine to 0
            -> per tensor, a uniform quantizer of 2^bits - 1 levels (step = max |w| / (2^(bits-1) - 1)); the
            last QAT_FRACTION of the steps fit through it (rounding, gradient straight through)
            -> the integers, range coded with a 16-bin histogram per tensor sent in the file (integer
               counts, so the decoder rebuilds exactly the encoder's model on any machine); tensors under
               MIN_HISTOGRAM weights (the biases) are coded uniformly, without one
    decode: the network from the file's settings, its steps and integers, evaluated at every pixel centre

Activation: sine (SIREN, Sitzmann et al. 2020, first layer sin(30 (W x + b)), as COIN uses; the default)
or relu (the CocoNet paper's network). Rate is set by width and depth (`quality` picks a preset) and by
`bits`. Evaluating the network on a finer grid upsamples the image (`neuralcodecs upsample`), another use
the paper shows.

Encoding runs `iterations` steps, or fewer where the time `budget` would not allow them: every
PLAN_AFTER steps the encoder measures its speed and fits the schedule to the steps the budget leaves.
Where the iteration cap decides, the same image gives the same file on the same machine and thread
count; a time budget that cuts fitting short depends on the machine's speed.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import struct
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..codec import ENCODER_ONLY, Codec, Command, check_index_quality, check_number, decode, open_file
from ..codec import progress as progress_bar
from ..entropy.coder import Decoder, Encoder
from ..errors import BitstreamError
from ..image import save_image, to_tensor
from ..threads import one_thread
from ..registry import register
from ..train.step import train_step

# (width, depth, Adam learning rate) per quality. Wider sine networks need a lower learning rate to fit stably
# within a 300 s budget (at the narrow ones' rate the widest collapsed on some images), and positional encoding
# into fewer, wider sine layers measured no better; the measurements are in the README.
PRESETS = ((12, 8, 1e-3), (16, 8, 1e-3), (20, 10, 1e-3), (28, 10, 1e-3), (36, 10, 5e-4), (48, 10, 3e-4))
W0 = 30.0  # SIREN's first-layer frequency
QAT_FRACTION = 0.15  # the last part of fitting sees the quantized weights
COMPILE_MIN_BUDGET = 60.0  # seconds: shorter fits run uncompiled
PLAN_AFTER = 200  # the schedule is fitted to the budget every this many steps
HISTOGRAM_BINS = 16  # per tensor of at least MIN_HISTOGRAM weights; smaller ones are coded uniformly
MIN_HISTOGRAM = 256
DIVERGED = 2.0  # a smoothed training loss this many times its best (3 dB) means the fit blew up ...
HEALTHY = 1.5  # ... and one within this factor may be snapshotted to roll back to


class CoordinateNetwork(nn.Module):
    def __init__(self, width: int, depth: int, activation: str):
        super().__init__()
        self.activation = activation
        dims = [2] + [width] * depth + [3]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        if activation == "sine":  # SIREN's initialization keeps activations well spread through the depth
            with torch.no_grad():
                self.layers[0].weight.uniform_(-1 / 2, 1 / 2)
                for layer in self.layers[1:]:
                    bound = math.sqrt(6 / layer.in_features) / W0
                    layer.weight.uniform_(-bound, bound)

    def forward(self, xy: Tensor, steps: list[Tensor] | None = None, levels: int = 0) -> Tensor:
        """RGB at coordinates xy; with `steps` (one per parameter), through the weights' quantizer."""
        params = list(self.parameters())
        if steps is not None:  # rounding in the forward pass, identity in the backward pass
            params = [p + (quantize(p, s, levels) * s - p).detach() for p, s in zip(params, steps)]
        h = xy
        for k in range(0, len(params), 2):
            h = torch.nn.functional.linear(h, params[k], params[k + 1])
            if k + 2 < len(params):
                h = torch.sin(W0 * h) if self.activation == "sine" else torch.relu(h)
        return h + 0.5


class PixelFit:
    """What fitting minimizes, for train_step: the MSE of the network on a batch (coordinates, colours), through
    the weights' quantizer once `steps` is set (the quantization-aware phase)."""

    def __init__(self, forward, levels: int):
        self.forward, self.levels, self.steps = forward, levels, None

    def loss(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        xy, target = batch
        return {"loss": (self.forward(xy, self.steps, self.levels) - target).pow(2).mean()}


def quantize(p: Tensor, step: Tensor, levels: int) -> Tensor:
    """The integers in [-levels, levels] that code p on a grid of `step`."""
    return torch.round(p.detach() / step).clamp(-levels, levels)


RENDER_BATCH = 1 << 16  # pixels a decoder evaluates at once (a constant: every decoder computes the same pixels)


def _axis(n: int) -> Tensor:
    """The centres of n pixels along one side, in [-1, 1]."""
    return (torch.arange(n) + 0.5) / n * 2 - 1


def pixel_centres(h: int, w: int) -> Tensor:
    """(h*w) x 2 coordinates (x, y) of the pixel centres of an h x w image, in [-1, 1]."""
    ys, xs = _axis(h), _axis(w)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y], dim=-1).view(-1, 2)


@register("coconet")
class CocoNet(Codec):
    __doc__ = __doc__  # the module's: the papers and the data flow, for help()
    quality_meaning = "network size 1-6 (larger: more weights, more bits)"
    learned = True  # a network fitted to each image
    @dataclass(frozen=True)
    class Config:
        quality: int = 4
        activation: str = "sine"
        bits: int = 10  # each tensor's quantizer has 2^bits - 1 levels (the best of 8-12: README)
        # how the network is fitted, which only the encoder reads (files leave them out: codec.ENCODER_ONLY)
        iterations: int = field(default=100_000, metadata=ENCODER_ONLY)  # cap; the budget usually decides
        budget: float = field(default=300.0, metadata=ENCODER_ONLY)  # seconds of fitting at most
        lr: float | None = field(default=None, metadata=ENCODER_ONLY)  # Adam's; None: the size's (PRESETS)
        # pixels per step, drawn at random (fewer: noisier steps; more: fewer steps in the budget; README)
        batch: int = field(default=1 << 12, metadata=ENCODER_ONLY)
        # torch.compile fuses the sines: faster steps after seconds of compiling (README)
        compile: bool = field(default=True, metadata=ENCODER_ONLY)
        seed: int = field(default=0, metadata=ENCODER_ONLY)

        def __post_init__(self):
            check_index_quality("coconet", self.quality, len(PRESETS), "network size")
            if self.activation not in ("sine", "relu"):
                raise ValueError(f"coconet activation must be 'sine' or 'relu', got {self.activation!r}")
            check_number("coconet bits", self.bits, 4, 16)
            check_number("coconet iterations", self.iterations, 1, math.inf)
            check_number("coconet batch", self.batch, 1, math.inf)
            check_number("coconet seed", self.seed, 0, 2 ** 63 - 1)
            check_number("coconet budget", self.budget, 0, math.inf, integer=False, above_lo=True)
            if self.lr is not None:
                check_number("coconet lr", self.lr, 0, math.inf, integer=False, above_lo=True)

    qualities: ClassVar[tuple] = tuple(range(1, len(PRESETS) + 1))

    @property
    def levels(self) -> int:
        return 2 ** (self.config.bits - 1) - 1

    @property
    def preset(self) -> tuple[int, int, float]:
        """(width, depth, learning rate) of this size"""
        return PRESETS[self.config.quality - 1]

    @property
    def fingerprint(self) -> bytes:
        # A file holds weights, not the network's shape, which `quality` looks up in PRESETS: a file made under
        # another table or first-layer frequency is refused instead of decoding to noise. Learning rates are
        # left out: they change how a network is fitted, not how it is read.
        shapes = [(width, depth) for width, depth, _ in PRESETS]
        return hashlib.sha256(repr((shapes, W0)).encode()).digest()[:8]

    def _network(self) -> CoordinateNetwork:
        width, depth, _ = self.preset
        return CoordinateNetwork(width, depth, self.config.activation)

    def fit(self, x: np.ndarray, progress: bool = True) -> tuple[CoordinateNetwork, list[Tensor]]:
        """The network fitted to image x (uint8 HxWx3) and its quantizer steps: the encoder's work."""
        from tqdm import tqdm

        cfg = self.config
        with torch.random.fork_rng(devices=[]):  # the seeded start, leaving the caller's random state as it was
            torch.manual_seed(cfg.seed)
            net = self._network()
        h, w, _ = x.shape
        xy, target = pixel_centres(h, w), to_tensor(x)[0].permute(1, 2, 0).reshape(-1, 3)
        base_lr = self.preset[2] if cfg.lr is None else cfg.lr
        opt = torch.optim.Adam(net.parameters(), lr=base_lr)
        g = torch.Generator().manual_seed(cfg.seed)
        # random pixel batches: many cheap steps fit faster than few whole-image ones on a CPU
        # compiling costs seconds, twice (again for the quantized phase): more than a short budget can win back
        compile_ = cfg.compile and cfg.budget >= COMPILE_MIN_BUDGET
        objective = PixelFit(torch.compile(net) if compile_ else net, self.levels)
        total, qat_start, steps, start = cfg.iterations, None, None, time.monotonic()
        # Sine networks trained with Adam at a high rate sometimes blow up (README), and a loose threshold missed
        # some of it. A smoothed loss far above its best so far rolls the fit back to the last healthy snapshot,
        # and the learning rate is halved from there on.
        smooth, best, lr_scale, snapshot = math.inf, math.inf, 1.0, None
        bar = progress_bar(total=total, desc="coconet fit") if progress else tqdm(disable=True)
        step = 0
        while step < total:
            if step % PLAN_AFTER == 0 and smooth <= HEALTHY * best:
                snapshot = copy.deepcopy((net.state_dict(), opt.state_dict()))
            if qat_start is None and step >= PLAN_AFTER and step % PLAN_AFTER == 0:
                # fit the schedule to the budget from the speed so far (the first step, which compiles, aside),
                # keeping the time of one more compile in hand for the quantized phase
                elapsed = time.monotonic() - start
                per_step = max((elapsed - first_step) / (step - 1), 1e-6)
                total = min(cfg.iterations, step + int((cfg.budget - elapsed - first_step) / per_step))
                bar.total = total
            if qat_start is None and step >= (1 - QAT_FRACTION) * total:
                qat_start = step
                steps = objective.steps = self._steps(net)
                objective.forward = torch.compile(net) if compile_ else net
            # one cosine from lr to 0 over all steps: the quantized phase starts where the rate is already low
            lr = lr_scale * base_lr * 0.5 * (1 + math.cos(math.pi * step / total))
            for group in opt.param_groups:
                group["lr"] = lr
            idx = torch.randint(len(xy), (cfg.batch,), generator=g) if cfg.batch < len(xy) else slice(None)
            metrics = train_step(objective, (xy[idx], target[idx]), opt, clip=None)
            if step == 0:
                first_step = time.monotonic() - start  # includes compiling
            step += 1
            bar.update(1)
            value = metrics["loss"] if metrics else math.inf
            smooth = value if not math.isfinite(smooth) else 0.9 * smooth + 0.1 * value
            best = min(best, smooth)
            if not math.isfinite(value) or smooth > DIVERGED * best:
                net.load_state_dict(snapshot[0])
                opt.load_state_dict(snapshot[1])
                smooth, lr_scale = best, lr_scale / 2
            if step % 100 == 0:
                bar.set_postfix(psnr=f"{-10 * math.log10(max(value, 1e-10)):.2f}", lr_scale=lr_scale)
            if time.monotonic() - start > cfg.budget:
                break
        bar.close()
        if steps is None:  # the budget ran out before the quantized phase: quantize what there is
            steps = self._steps(net)
        return net, steps

    def _steps(self, net: CoordinateNetwork) -> list[Tensor]:
        """One quantizer step per parameter tensor: its largest weight sits on the last level."""
        return [p.detach().abs().max().clamp_min(1e-12) / self.levels for p in net.parameters()]

    def warm_up(self, image: np.ndarray) -> None:
        # the round trip without the fitting, which would spend the whole time budget on a crop
        quick = CocoNet(dataclasses.replace(self.config, iterations=2), name=self.name)
        decode(quick.encode(np.ascontiguousarray(image[:64, :64])))

    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        net, steps = self.fit(x)
        head, enc = [], Encoder()
        for p, s in zip(net.parameters(), steps):
            k = quantize(p, s, self.levels).to(torch.int64).flatten().numpy()
            symbols = k + self.levels + 1  # in [1, 2^bits - 1]
            head.append(struct.pack("<f", s.item()))
            if p.numel() >= MIN_HISTOGRAM:
                counts = np.bincount(symbols >> (self.config.bits - 4), minlength=HISTOGRAM_BINS)
                scaled = np.where(counts > 0, np.maximum(1, np.round(255 * counts / counts.max())), 0)
                head.append(scaled.astype(np.uint8).tobytes())
                enc.categorical(symbols, self._pmf(scaled))
            else:
                enc.categorical(symbols, self._pmf(None))
        return [b"".join(head) + enc.to_bytes()]

    def _pmf(self, histogram: np.ndarray | None) -> np.ndarray:
        """The model of one tensor's symbols: its histogram's bins spread evenly over their values."""
        n = 2 ** self.config.bits
        if histogram is None:
            return np.ones(n)
        return np.repeat(histogram.astype(np.float64), n // HISTOGRAM_BINS)

    def _load(self, chunk: bytes) -> CoordinateNetwork:
        net = self._network()
        params = list(net.parameters())
        head = sum(4 + (HISTOGRAM_BINS if p.numel() >= MIN_HISTOGRAM else 0) for p in params)
        if len(chunk) < head:
            raise BitstreamError(f"corrupted file: {len(chunk)} bytes of weights, the header alone needs {head}")
        dec, offset = Decoder(chunk[head:]), 0
        with torch.no_grad():
            for p in params:
                (step,) = struct.unpack_from("<f", chunk, offset)
                offset += 4
                histogram = None
                if p.numel() >= MIN_HISTOGRAM:
                    histogram = np.frombuffer(chunk, np.uint8, HISTOGRAM_BINS, offset)
                    offset += HISTOGRAM_BINS
                    if not histogram.any():
                        raise BitstreamError("corrupted file: an empty weight histogram")
                if not math.isfinite(step) or step <= 0:
                    raise BitstreamError("corrupted file: a quantizer step is not a positive number")
                k = dec.categorical(p.numel(), self._pmf(histogram)).astype(np.int64) - self.levels - 1
                p.copy_(torch.from_numpy(k.astype(np.float32)).view_as(p) * torch.tensor(step, dtype=torch.float32))
        return net

    @torch.no_grad()
    def render(self, chunk: bytes, h: int, w: int) -> np.ndarray:
        """The image the weights in `chunk` describe, on an h x w grid of pixel centres."""
        net = self._load(chunk)
        ys, xs = _axis(h), _axis(w)  # pixel_centres' coordinates, gathered per batch below
        out = np.empty((h * w, 3), np.uint8)
        # RENDER_BATCH pixel centres at a time, straight into the 8-bit output: memory stays a small multiple of
        # the output's, however large the grid a header (or `upsample`) asks for
        with one_thread():  # the same pixels whatever the caller's thread count (see threads.py)
            for start in range(0, h * w, RENDER_BATCH):
                i = torch.arange(start, min(start + RENDER_BATCH, h * w))
                rgb = net(torch.stack([xs[i % w], ys[i // w]], dim=-1))
                out[start:start + len(i)] = rgb.clamp(0, 1).mul(255.0).round().to(torch.uint8).numpy()
        return out.reshape(h, w, 3)

    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        return self.render(chunks[0], shape[0], shape[1])


def upsample(data: bytes, scale: float) -> np.ndarray:
    """A coconet file's image rendered `scale` times larger (or smaller): the network queried on a finer grid."""
    if not 0 < scale <= 16:
        raise ValueError(f"scale must be in (0, 16], got {scale}")
    header, codec, chunks = open_file(data, allow_partial=False)
    if not isinstance(codec, CocoNet):
        raise BitstreamError(f"only coconet files can be upsampled (this one is {header.name})")
    # decoded as a file of the larger size, so that every check of decoding applies to it too (chunk count,
    # the decoder's pixel limit before anything is allocated, a damaged network raising BitstreamError)
    larger = dataclasses.replace(header, height=max(1, round(header.height * scale)),
                                 width=max(1, round(header.width * scale)))
    return codec.decode_file(larger, chunks)


def _cmd_upsample(args) -> None:
    save_image(args.output, upsample(Path(args.input).read_bytes(), args.scale), force=args.force)


def _upsample_arguments(p) -> None:
    p.add_argument("input", help="a coconet file")
    p.add_argument("output", help="the rendered image (PNG)")
    p.add_argument("--scale", type=float, default=2.0, help="size factor (default: 2)")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT")


CocoNet.commands = (Command("upsample", "render a coconet file on a finer grid", _upsample_arguments, _cmd_upsample),)
