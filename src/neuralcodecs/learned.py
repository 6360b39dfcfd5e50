"""What every learned codec shares: it is a Codec and a torch.nn.Module, loads shipped weights, and keeps
training (forward: reconstruction and estimated bits) apart from real coding (encode/decode)."""
from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import torch
from torch import nn

from . import weights
from .codec import Codec


class LearnedCodec(Codec, nn.Module):
    """Base of the learned codecs.

    Subclasses build their layers in __init__ (after calling this one), implement
      forward(x) -> {"x_hat", "bits" (per sample), "lmbda" (per sample)}   training path
      encode_chunks / decode_chunks                                       real coding
      entropy_models()                                                    their entropy models
      estimate_bits(x)          the model's bits for padded image x (what the real file should cost)
    and list their rate points' lambdas in `lmbdas` (quality q uses lmbdas[q - 1]).
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
    def for_training(cls, lmbdas: list[float] | None = None, name: str | None = None, **settings: Any) -> "LearnedCodec":
        return cls(cls.Config(quality=cls.default_quality, **settings), name=name, lmbdas=tuple(lmbdas or ()) or None)

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
        with _one_thread():
            return super().encode(image)

    def decode_file(self, header, chunks):
        with _one_thread():
            return super().decode_file(header, chunks)

    # -- entropy models -------------------------------------------------------------------------
    def estimate_bits(self, x) -> float:
        raise NotImplementedError

    def entropy_models(self) -> list[nn.Module]:
        raise NotImplementedError

    def update_tables(self) -> None:
        """Rebuild the integer coding tables from the learned densities (after training, after loading)."""
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


@contextlib.contextmanager
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
