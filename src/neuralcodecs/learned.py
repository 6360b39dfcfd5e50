"""What every learned codec shares: it is a Codec and a torch.nn.Module, loads shipped weights, and keeps
training (forward: reconstruction and estimated bits) apart from real coding (encode/decode)."""
from __future__ import annotations

import contextlib
import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from . import weights
from .codec import Codec
from .image import from_tensor, to_tensor


class LearnedCodec(Codec, nn.Module):
    """Base of the learned codecs.

    Subclasses build their layers in __init__ (after calling this one), implement
      forward(x) -> {"x_hat", "bits" (per sample), "lmbda" (per sample)[, "target"]}   training path
      encode_chunks / decode_chunks                                       real coding
      entropy_models()                                                    their entropy models
      estimate_bits(x)          the model's bits for padded image x (what the real file should cost)
    and give the lambdas their training weighs distortion with in `lmbdas` (one per rate point for
    variable-rate models, where quality q uses lmbdas[q - 1]; a single 1.0 where the rate is not learned).
    """

    lmbdas: ClassVar[tuple[float, ...]] = ()
    # Training stages, for methods trained in steps (e.g. theis2017: transforms, then per-rate scales); a
    # stage decides which parameters train (requires_grad) and what forward() samples.
    stages: ClassVar[tuple[str, ...]] = ("all",)
    pad_to = 16

    def __init__(self, config: Any, name: str | None = None, lmbdas: tuple[float, ...] | None = None):
        super().__init__(config, name)
        self.lmbdas = tuple(lmbdas or type(self).lmbdas)
        self._fingerprint: bytes | None = None
        self.stage = self.stages[0]

    def set_stage(self, stage: str) -> None:
        if stage not in self.stages:
            raise ValueError(f"{self.name} trains in stages {self.stages}, not {stage!r}")
        self.stage = stage

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any, name: str) -> "LearnedCodec":
        """A ready coder: shipped weights (with their coding tables) loaded, eval mode, CPU."""
        model = cls(config, name=name)
        model.load_weights(weights.shipped_state(name))
        return model.eval()

    @classmethod
    def trained(cls, name: str) -> bool:
        """Whether weights for `name` are installed."""
        return name in weights.manifest()

    @classmethod
    def for_training(cls, lmbdas: list[float] | None = None, name: str | None = None, **settings: Any) -> "LearnedCodec":
        settings = {"quality": cls.default_quality, **settings}
        return cls(cls.Config(**settings), name=name, lmbdas=tuple(lmbdas or ()) or None)

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        # The integer coding tables ship inside the state and are used as they are: rebuilding them from the
        # half-precision densities could round differently on another machine and break bit-exact decoding.
        # (The entropy models' load hooks build tables only when a state lacks them.)
        self.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        self._fingerprint = weights.fingerprint(self.state_dict())

    # -- real coding: one thread -----------------------------------------------------------------
    # A convolution's float result depends on how the work is split across threads, and a change in the
    # last bit can move a pixel across a rounding boundary: decoding must not depend on the caller's
    # thread count, so coding runs on one thread (on 2 cores it is no slower: benchmarks/codec_speed.py).
    def encode(self, image):
        with one_thread():
            return super().encode(image)

    def decode_file(self, header, chunks):
        with one_thread():
            return super().decode_file(header, chunks)

    # -- entropy models -------------------------------------------------------------------------
    def estimate_bits(self, x) -> float:
        raise NotImplementedError

    def entropy_models(self) -> list[nn.Module]:
        raise NotImplementedError

    def update_tables(self) -> None:
        """Rebuild the integer coding tables from the learned densities (the training loop does, at its end)."""
        for m in self.entropy_models():
            m.update_tables()

    def aux_loss(self) -> torch.Tensor:
        return sum(m.aux_loss() for m in self.entropy_models())

    def aux_parameters(self):
        """Parameters trained only by aux_loss (e.g. the learned quantiles of a FactorizedPrior)."""
        for m in self.entropy_models():
            yield from m.aux_parameters()

    @property
    def fingerprint(self) -> bytes:
        if self._fingerprint is None:
            return weights.fingerprint(self.state_dict())
        return self._fingerprint


class VariableRateCodec(LearnedCodec):
    """A transform codec with one set of transforms for every rate point (the shape of balle2017 and
    theis2017):

        x -> g_a -> y * gain[q] -> quantize -> y_hat --(entropy model q)--> one chunk
        y_hat / gain[q] -> g_s -> x_hat

    Rate point q has a per-channel gain (gain[q] > 1: a finer quantizer, more bits) and its own entropy
    model; the transforms are shared. Subclasses build `g_a`, `g_s` and call `_init_rate_points`.

    Training (forward): each sample of a batch gets one of `train_points`, cycling so they train equally;
    the rate is measured on y + uniform noise (the papers' relaxation) and the synthesis sees the rounded
    y_hat with the gradient passed straight through (identity), so the decoder trains on what it decodes.
    """

    latent_stride = 16  # pixels per latent along each axis

    def _init_rate_points(self, channels: int, make_prior, gain0: float) -> None:
        k = len(self.lmbdas)
        # log-gains start on the MSE rule of thumb (the best quantizer step shrinks like lmbda^-1/2) around
        # gain0, the gain of the middle point, chosen per codec so that an untrained g_a's latents are not
        # all rounded to zero
        mid = math.log(self.lmbdas[k // 2])
        init = torch.tensor([math.log(gain0) + 0.5 * (math.log(l) - mid) for l in self.lmbdas])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, channels).clone())
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, channels).clone())
        self.priors = nn.ModuleList(make_prior() for _ in range(k))
        self.train_points = list(range(k))

    # channels whose coefficients count toward the training rate; None: all (see theis2017's mask)
    rate_mask: Tensor | None = None

    def entropy_models(self):
        return list(self.priors)

    def _gains(self, q: Tensor) -> tuple[Tensor, Tensor]:
        return self.log_gain[q].exp()[:, :, None, None], self.log_inv_gain[q].exp()[:, :, None, None]

    def analysis(self, x: Tensor) -> Tensor:
        return self.g_a(x)

    def synthesis(self, y_hat: Tensor) -> Tensor:
        return self.g_s(y_hat)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        b, points = x.shape[0], torch.tensor(self.train_points)
        q = points[(torch.randint(len(points), (1,)) + torch.arange(b)) % len(points)]
        gain, inv_gain = self._gains(q)
        y = self.analysis(x).float() * gain
        bits = torch.zeros(b, device=x.device)
        y_hat = torch.empty_like(y)
        with torch.autocast(device_type=x.device.type, enabled=False):
            for k in q.unique().tolist():
                idx = (q == k).nonzero().squeeze(1)
                _, likelihoods = self.priors[k](y[idx])
                info = -torch.log2(likelihoods)
                if self.rate_mask is not None:  # coefficients held at zero in training cost nothing
                    info = info * self.rate_mask.view(1, -1, 1, 1)
                bits = bits.index_add(0, idx, info.sum(dim=(1, 2, 3)))
                # round on the grid the coder will use, gradient straight through
                m = self.priors[k].quantization_offset().view(1, -1, 1, 1)
                y_hat[idx] = torch.round(y[idx] - m) + m + (y[idx] - y[idx].detach())  # exact values
        x_hat = self.synthesis(y_hat * inv_gain)
        lmbda = torch.tensor(self.lmbdas, device=x.device)[q]
        return {"x_hat": x_hat, "bits": bits, "lmbda": lmbda}

    # -- real coding --------------------------------------------------------------------------------
    def _latents(self, x: np.ndarray):
        """The scaled latents of a padded image at this codec's rate point, and that point's model."""
        q = torch.tensor([self.config.quality - 1])
        gain, _ = self._gains(q)
        return self.analysis(to_tensor(x)) * gain, self.priors[q.item()]

    @torch.no_grad()
    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        y, prior = self._latents(x)
        return [prior.compress(y)]

    @torch.no_grad()
    def estimate_bits(self, x: np.ndarray) -> float:
        y, prior = self._latents(x)
        _, likelihoods = prior.eval()(y)
        return float(-torch.log2(likelihoods).sum())

    @torch.no_grad()
    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        h, w, _ = shape
        q = torch.tensor([self.config.quality - 1])
        _, inv_gain = self._gains(q)
        prior = self.priors[q.item()]
        s = self.latent_stride
        y_hat = prior.decompress(chunks[0], (1, prior.channels, h // s, w // s))
        return from_tensor(self.synthesis(y_hat * inv_gain))


def entropy_coded_codecs() -> list[str]:
    """The ready learned codecs whose files are range coded with learned densities (the ones estimate_bits
    can be checked against)."""
    from .registry import create_codec, get_entry, list_codecs
    learned = [n for n in list_codecs(ready=True) if issubclass(get_entry(n).cls, LearnedCodec)]
    return [n for n in learned if create_codec(n).entropy_models()]


@contextlib.contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
