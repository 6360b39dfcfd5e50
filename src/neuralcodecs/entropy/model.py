"""What every entropy model shares: it returns BITS, and it owns integer coding tables that travel with the
weights.

    forward(...)    -> (the values the decoder will see, or their training relaxation, and their bits)
    compress(...)   -> bytes, through the one coder wrapper (coder.py)
    decompress(...) -> exactly the values forward() returns in eval mode

Bits, not likelihoods: callers add them up, so no caller takes -log2 itself, and tests hold the real bytes of
compress() against them (the information bound).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn.bound import lower_bound

LIKELIHOOD_BOUND = 1e-9  # keeps -log2 p finite (30 bits) and its gradient useful


def bits_of(likelihoods: Tensor) -> Tensor:
    """-log2 p, elementwise, with p bounded below (the one place a probability becomes bits)."""
    return -torch.log2(lower_bound(likelihoods, LIKELIHOOD_BOUND))


def entropy_models(module: nn.Module) -> list["EntropyModel"]:
    """The entropy models inside a module (a codec, a latent codec), in module order."""
    return [m for m in module.modules() if isinstance(m, EntropyModel)]


class EntropyModel(nn.Module):
    """Base of the entropy models. `update_tables()` rebuilds the coding tables from learned parameters (the
    training loop calls it when training ends); `aux_loss()` trains only `aux_parameters()`."""

    def update_tables(self) -> None:
        pass

    def aux_loss(self) -> Tensor:
        return torch.zeros(())

    def aux_parameters(self) -> list[nn.Parameter]:
        return []
