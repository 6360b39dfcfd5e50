"""CocoNet: Bricman, Ionescu, "CocoNet: A Deep Neural Network for Mapping Pixel Coordinates to Color
Values", ICONIP 2018; used as a codec the way COIN does (Dupont, Goliński, Alizadeh, Teh, Doucet, "COIN:
COmpression with Implicit Neural representations", 2021).

    encode: f: (x, y) in [-1, 1]^2 -> (r, g, b), `depth` fully-connected layers of `width` units, fitted to
            this one image (Adam on MSE over random pixel batches, seeded) -> its weights in half precision
    decode: the network from the file's settings and weights, evaluated at every pixel centre

Activation: sine (SIREN, Sitzmann et al. 2020, first layer sin(30 (W x + b)), as COIN uses; the default)
or relu (the CocoNet paper's network). Rate is set by width and depth (`quality` picks a preset), the
weights cost 16 bits each. Evaluating the network on a finer grid upsamples the image
(`neuralcodecs upsample`), another use the paper shows.

Encoding stops after `iterations` steps or `budget` seconds, whichever comes first, and keeps the best
weights seen. With the iteration cap reached, the same image gives the same file on the same machine
and thread count; a time budget that cuts fitting short depends on the machine's speed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..codec import Codec, check_index_quality
from ..errors import BitstreamError
from ..image import from_tensor, to_tensor
from ..learned import one_thread
from ..registry import register

# (width, depth) per quality: 613 to 21459 weights, 0.025 to 0.87 bpp on a 768x512 image at 16 bits each
PRESETS = ((10, 6), (16, 8), (20, 10), (28, 10), (36, 10), (48, 10))
W0 = 30.0  # SIREN's first-layer frequency
CHECK_EVERY = 200  # fitting steps between whole-image checks of the best weights (each costs ~15 steps)


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

    def forward(self, xy: Tensor) -> Tensor:
        h = xy
        for layer in self.layers[:-1]:
            h = torch.sin(W0 * layer(h)) if self.activation == "sine" else torch.relu(layer(h))
        return self.layers[-1](h) + 0.5


def pixel_centres(h: int, w: int) -> Tensor:
    """(h*w) x 2 coordinates (x, y) of the pixel centres of an h x w image, in [-1, 1]."""
    ys = (torch.arange(h) + 0.5) / h * 2 - 1
    xs = (torch.arange(w) + 0.5) / w * 2 - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y], dim=-1).view(-1, 2)


@register("coconet")
class CocoNet(Codec):
    @dataclass(frozen=True)
    class Config:
        quality: int = 4
        activation: str = "sine"
        iterations: int = 2000
        budget: float = 300.0  # seconds of fitting at most
        lr: float = 3e-4  # kodim15, 60 s: 25.16 dB at 3e-4, 24.61 at 1e-3, diverges at 3e-3
        batch: int = 1 << 14  # pixels per step, drawn at random (the whole image if it has fewer)
        seed: int = 0

        def __post_init__(self):
            check_index_quality("coconet", self.quality, len(PRESETS), "network size")
            if self.activation not in ("sine", "relu"):
                raise ValueError(f"coconet activation must be 'sine' or 'relu', got {self.activation!r}")
            if self.iterations < 1 or self.budget <= 0 or self.lr <= 0 or self.batch < 1:
                raise ValueError("coconet needs iterations >= 1, budget > 0, lr > 0 and batch >= 1")

    qualities: ClassVar[tuple] = tuple(range(1, len(PRESETS) + 1))
    default_quality = 4

    def _network(self) -> CoordinateNetwork:
        width, depth = PRESETS[self.config.quality - 1]
        return CoordinateNetwork(width, depth, self.config.activation)

    def fit(self, x: np.ndarray, progress: bool = True) -> CoordinateNetwork:
        """The network fitted to image x (uint8 HxWx3): the encoder's work."""
        from tqdm import tqdm

        cfg = self.config
        torch.manual_seed(cfg.seed)
        net = self._network()
        h, w, _ = x.shape
        xy, target = pixel_centres(h, w), to_tensor(x)[0].permute(1, 2, 0).reshape(-1, 3)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        # random pixel batches: many cheap steps fit faster than few whole-image ones on a CPU
        g = torch.Generator().manual_seed(cfg.seed)
        best, best_loss, start = None, math.inf, time.monotonic()
        bar = tqdm(range(cfg.iterations), desc="coconet fit", disable=not progress, leave=False)
        for step in bar:
            idx = torch.randint(len(xy), (cfg.batch,), generator=g) if cfg.batch < len(xy) else slice(None)
            loss = (net(xy[idx]) - target[idx]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last = step == cfg.iterations - 1 or time.monotonic() - start > cfg.budget
            if step % CHECK_EVERY == 0 or last:  # keep the best weights, judged on the whole image
                with torch.no_grad():
                    full = (net(xy) - target).pow(2).mean().item()
                if full < best_loss:
                    best_loss, best = full, {k: v.clone() for k, v in net.state_dict().items()}
                bar.set_postfix(psnr=f"{-10 * math.log10(max(best_loss, 1e-10)):.2f}")
            if last:
                break
        net.load_state_dict(best)
        return net

    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        net = self.fit(x)
        return [b"".join(p.detach().half().numpy().tobytes() for p in net.parameters())]

    def _load(self, chunk: bytes) -> CoordinateNetwork:
        net = self._network()
        params = list(net.parameters())
        expected = 2 * sum(p.numel() for p in params)
        if len(chunk) != expected:
            raise BitstreamError(f"corrupted file: {len(chunk)} bytes of weights, the network has {expected}")
        flat = torch.from_numpy(np.frombuffer(chunk, np.float16).astype(np.float32))
        if not bool(torch.isfinite(flat).all()):
            raise BitstreamError("corrupted file: weights are not finite")
        with torch.no_grad():
            offset = 0
            for p in params:
                p.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
        return net

    @torch.no_grad()
    def render(self, chunk: bytes, h: int, w: int) -> np.ndarray:
        """The image the weights in `chunk` describe, on an h x w grid of pixel centres."""
        net = self._load(chunk)
        with one_thread():  # the same pixels whatever the caller's thread count (see learned.py)
            rgb = torch.cat([net(xy) for xy in pixel_centres(h, w).split(1 << 16)])
        return from_tensor(rgb.view(h, w, 3).permute(2, 0, 1)[None])

    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        return self.render(chunks[0], shape[0], shape[1])


def upsample(data: bytes, scale: float) -> np.ndarray:
    """A coconet file's image rendered `scale` times larger (or smaller): the network queried on a finer grid."""
    from .. import container
    from ..codec import decoder_for

    header = container.read_header(data)
    codec = decoder_for(header)
    if not isinstance(codec, CocoNet):
        raise BitstreamError(f"only coconet files can be upsampled (this one is {header.name})")
    if not 0 < scale <= 16:
        raise ValueError(f"scale must be in (0, 16], got {scale}")
    chunks = container.read_chunks(data, header, allow_partial=False)
    out = codec.render(chunks[0], max(1, round(header.height * scale)), max(1, round(header.width * scale)))
    return np.round(out.mean(axis=2, keepdims=True)).astype(np.uint8) if header.channels == 1 else out
