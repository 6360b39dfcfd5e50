"""Jiang, Tao, Liu, Zhao, Ji, Ding, "An End-to-End Compression Framework Based on Convolutional Neural
Networks", IEEE TCSVT 2017.

    x -> ComCNN: [conv 3x3, 64] relu  [conv 3x3 /2, 64] BN relu  [conv 3x3, 3] -> compact image c (H/2 x W/2)
      -> 8 bits -> host codec (jpeg by default; jpeg2000, heif) -> its standard file: the one chunk
    decoded c -> bicubic x2 -> RecCNN: [conv 3x3, 64] relu, 18 x ([conv 3x3, 64] BN relu), [conv 3x3, 3]
              -> + the bicubic image (RecCNN learns the residual) -> x_hat

The chunk is an ordinary JPEG (JPEG 2000, HEIF) of the half-size compact image: `neuralcodecs extract`
writes it out for any viewer. Quality is the host codec's own quality setting; one ComCNN/RecCNN pair
serves every quality of its host.

Training, the paper's way round a codec without a gradient: each step has two reconstructions,
  RecCNN(up(host(c)))     the real host codec codes and decodes c (no gradient to ComCNN): trains RecCNN
                          on what it will see when decoding, at a random quality of the host's sweep;
  RecCNN'(up(c))          the codec replaced by the identity, through a RecCNN whose weights are held fixed
                          for this term: trains ComCNN to make images RecCNN reconstructs well.
The paper alternates the two updates; summing the two terms with the gradients so routed is the same
pair of updates made at once. The loss is MSE (rate is set by the host's quality, not learned).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..codec import Command, HostedCodec
from ..image import as_image, from_tensor, max_decode_pixels, padded_shape, save_image, to_tensor
from ..learned import LearnedCodec
from ..threads import one_thread
from ..nn import conv
from ..registry import create_codec, get_entry, register
from .classical import HEIF

HOSTS = ("jpeg", "jpeg2000", "heif")


# photos' mean and spread per channel (0..1), roughly: where ComCNN's batch norm starts
PIXEL_MEAN, PIXEL_STD = 0.45, 0.25


class ComCNN(nn.Sequential):
    def __init__(self, channels: int = 3, width: int = 64):
        super().__init__(conv(channels, width, 3), nn.ReLU(),
                         conv(width, width, 3, 2), nn.BatchNorm2d(width), nn.ReLU(),
                         conv(width, channels, 3))
        self._start_as_downsampler(channels)

    @torch.no_grad()
    def _start_as_downsampler(self, channels: int) -> None:
        """The first `channels` paths start as a 2x2 box downsampler (the rest read nothing yet), so
        training starts from a bicubic-upsampled half-size image. From the default init the compact image is
        noise, and hundreds of steps leave training crops far below that start (README: "Why the constants are
        what they are")."""
        first, down, norm, last = self[0], self[2], self[3], self[5]
        for layer in (first, down, last):
            layer.weight[:channels].zero_()
            layer.bias[:channels].zero_()
        last.weight.zero_()
        for i in range(channels):
            first.weight[i, i, 1, 1] = 1.0                       # pixels are >= 0: the ReLU passes them
            # the mean of each 2x2 block: the half-size pixel sits where bicubic upsampling expects it
            down.weight[i, i, 1:, 1:] = 0.25
            last.weight[i, i, 1, 1] = 4 * PIXEL_STD              # undoes the batch norm below
            last.bias[i] = PIXEL_MEAN - 2 * PIXEL_STD
        # batch norm maps the half-size image to mean 0.5, spread 0.25, which the ReLU passes; its running
        # statistics start at photos' values, so eval mode agrees with training from the first step
        norm.weight[:channels] = 0.25
        norm.bias[:channels] = 0.5
        norm.running_mean[:channels] = PIXEL_MEAN
        norm.running_var[:channels] = PIXEL_STD ** 2


class RecCNN(nn.Module):
    """20 weight layers learning the residual of a (bicubic-upsampled or artefacted) image."""

    def __init__(self, channels: int = 3, width: int = 64, depth: int = 20):
        super().__init__()
        layers: list[nn.Module] = [conv(channels, width, 3), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [conv(width, width, 3), nn.BatchNorm2d(width), nn.ReLU()]
        layers.append(conv(width, channels, 3))
        # the residual starts at zero, so an untrained RecCNN returns its input and training starts from the
        # JPEG's quality (from the default init it starts below the JPEGs fed in; README: "Why the constants are
        # what they are")
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def upsample(c: Tensor) -> Tensor:
    return F.interpolate(c, scale_factor=2, mode="bicubic", align_corners=False)


def code_for_real(codec: HostedCodec, images: Tensor, qualities: tuple) -> Tensor:
    """Each image (NCHW in [0, 1]) coded and decoded by codec's real host at a random quality of
    `qualities`: what RecCNN sees at decoding time. No gradient flows through."""
    out = []
    for img in images.detach().float().cpu():
        # torch's generator, not Python's: the training checkpoint saves it, so a resumed run is exact
        quality = qualities[int(torch.randint(len(qualities), ()))]
        coded = from_tensor(img[None])
        h, w, c = coded.shape
        out.append(to_tensor(codec.host_decode(codec.host_encode(coded, quality), h, w, c, quality)))
    return torch.cat(out).to(images.device, images.dtype)


@register("jiang2017", host="jpeg")
class Jiang2017(HostedCodec, LearnedCodec):
    __doc__ = __doc__  # the module's: the paper and the data flow, for help()
    quality_meaning = "the host codec's quality for the half-size compact image"
    @dataclass(frozen=True)
    class Config:
        quality: float = 50  # the host codec's quality
        host: str = "jpeg"

        def __post_init__(self):
            if self.host not in HOSTS:
                raise ValueError(f"jiang2017 host must be one of {HOSTS}, got {self.host!r}")
            get_entry(self.host).cls.Config(quality=self.quality)  # the host checks its own quality

    # the host's sweep, up to where a half-size image stops paying (about 1 bpp on Kodak)
    qualities: ClassVar[tuple] = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90)
    lmbdas = (1.0,)  # the loss is plain MSE: no rate term to weigh
    pad_to = 2

    def __init__(self, config, name=None, lmbdas=None):
        super().__init__(config, name, lmbdas)
        self.comcnn = ComCNN()
        self.reccnn = RecCNN()

    @property
    def host_name(self) -> str:
        return self.config.host

    def _compact(self, x: Tensor) -> Tensor:
        return self.comcnn(x).clamp(0, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        c = self._compact(x)
        real = self.reccnn(upsample(code_for_real(self, c, type(self).qualities)))
        # RecCNN with its weights held fixed, and batch-norm statistics updated on copies (they must
        # follow what RecCNN sees when decoding: real codec output)
        fixed = {**{k: v.clone() for k, v in self.reccnn.named_buffers()},
                 **{k: v.detach() for k, v in self.reccnn.named_parameters()}}
        through = functional_call(self.reccnn, fixed, (upsample(c),))
        b = x.shape[0]
        return {"x_hat": torch.cat([real, through]), "target": torch.cat([x, x]),
                "bits": x.new_zeros(2 * b), "lmbda": x.new_ones(2 * b)}

    # -- real coding ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        return self.host_encode(from_tensor(self._compact(to_tensor(x))))

    @torch.no_grad()
    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        c = self.host_decode(chunks, shape[0] // 2, shape[1] // 2)
        return from_tensor(self.reccnn(upsample(to_tensor(c))))


@register("jiang2017-jpeg2000", host="jpeg2000")
class Jiang2017JPEG2000(Jiang2017):
    """Jiang et al. 2017 (see the module) with JPEG 2000 as the host codec: quality is its PSNR target in dB."""
    @dataclass(frozen=True)
    class Config(Jiang2017.Config):
        quality: float = 34
        host: str = "jpeg2000"

    qualities: ClassVar[tuple] = (26, 28, 30, 32, 34, 36, 38, 40, 42)


@register("jiang2017-heif", host="heif")
class Jiang2017HEIF(Jiang2017):
    """Jiang et al. 2017 (see the module) with HEIF (x265) as the host codec: quality is its quality 0-100."""
    @dataclass(frozen=True)
    class Config(Jiang2017.Config):
        quality: float = 33
        host: str = "heif"

    qualities: ClassVar[tuple] = HEIF.qualities  # the host's rate points


@register("jiang2017-enhance")
class JPEGEnhance(HostedCodec, LearnedCodec):
    """RecCNN on its own as a JPEG artefact remover (the paper's RecCNN, used on full-size JPEGs): the file
    is an ordinary full-size JPEG at `quality`, and decoding runs RecCNN on the decoded JPEG. Trained on
    JPEGs of random quality in `qualities`, so `neuralcodecs enhance` helps any JPEG of such quality.

        x -> JPEG (quality q) -> the one chunk -> JPEG decode -> RecCNN -> x_hat
    """
    quality_meaning = "JPEG quality 1-100 of the plain JPEG file"

    @dataclass(frozen=True)
    class Config:
        quality: int = 30

        def __post_init__(self):
            get_entry("jpeg").cls.Config(quality=self.quality)

    qualities: ClassVar[tuple] = (10, 20, 30, 40, 50)
    lmbdas = (1.0,)
    pad_to = 1  # RecCNN takes any size: the JPEG in the file is the image itself, not a padded copy
    commands = (Command("enhance", "reduce the artefacts of an ordinary JPEG (Jiang et al.'s RecCNN)",
                        lambda p: (p.add_argument("input", help="a JPEG file"),
                                   p.add_argument("output", help="the enhanced image (PNG)"),
                                   p.add_argument("--force", action="store_true", help="overwrite OUTPUT")),
                        lambda args: _cmd_enhance(args)),)

    def __init__(self, config, name=None, lmbdas=None):
        super().__init__(config, name, lmbdas)
        self.reccnn = RecCNN()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x_hat = self.reccnn(code_for_real(self, x, type(self).qualities))
        return {"x_hat": x_hat, "bits": x.new_zeros(x.shape[0]), "lmbda": x.new_ones(x.shape[0])}

    @torch.no_grad()
    def enhance(self, decoded: np.ndarray) -> np.ndarray:
        """A decoded JPEG (uint8 HxWx3) with its artefacts reduced."""
        return from_tensor(self.reccnn(to_tensor(decoded)))

    def enhance_jpeg(self, data: bytes) -> np.ndarray:
        """Any ordinary JPEG file (bytes) -> its decoded image with artefacts reduced (gray stays gray, CMYK and
        YCCK become RGB). ValueError for anything else, or over the decoder pixel limit."""
        x = as_image(_read_jpeg(data))
        with one_thread():  # the same pixels whatever the caller's thread count (see threads.py)
            y = self.enhance(np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x)
        return np.round(y.mean(axis=2, keepdims=True)).astype(np.uint8) if x.shape[2] == 1 else y

    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        return self.host_encode(x)

    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        h, w, _ = shape
        # files written before 2026-12-06 hold the image edge-padded to multiples of 16 (the learned codecs'
        # padding): RecCNN runs on the whole JPEG they hold, as it did then, and the padding is cropped after
        with Image.open(io.BytesIO(chunks[0])) as im:
            jw, jh = im.size
        if (jh, jw) == padded_shape(h, w, 16):
            h, w = jh, jw
        return self.enhance(self.host_decode(chunks, h, w))[:shape[0], :shape[1]]


def _read_jpeg(data: bytes) -> np.ndarray:
    """A JPEG file's pixels as L or RGB, its size checked against the decoder limit before decoding."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise ValueError(f"not a JPEG file (it is {im.format or 'unknown'}); enhance reads JPEG files")
            if im.width * im.height > max_decode_pixels():
                raise ValueError(f"a JPEG of {im.width}x{im.height} pixels is over the decoder limit")
            return np.asarray(im.convert("L" if im.mode == "L" else "RGB")).copy()
    # Pillow refuses a header that claims far more pixels than its own limit before our check can run
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError) as e:
        raise ValueError(f"not a readable JPEG file ({e})") from None


def _cmd_enhance(args) -> None:
    data = Path(args.input).read_bytes()
    save_image(args.output, create_codec("jiang2017-enhance").enhance_jpeg(data), force=args.force)
