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


def round_ste(y: Tensor, offset: Tensor | float = 0.0) -> Tensor:
    """round(y - offset) + offset, gradient straight through (exact values forward)."""
    return torch.round(y - offset) + offset + (y - y.detach())


class EntropyModel(nn.Module):
    """Base of the entropy models. `update_tables()` rebuilds the coding tables from learned parameters (the
    training loop calls it when training ends); `aux_loss()` trains only `aux_parameters()`."""

    # What training puts in place of rounding (`relaxed`). False: y + uniform noise, whose bits are a smooth
    # stand-in for the coded ones, which trains every part well. True ("hard"): y rounded as coding rounds it,
    # the gradient passed straight through, and the bits of those very values; with the decoder and the
    # densities held fixed, this lets an encoder fit the quantizer it is really coded with (Guo, Zhang, Feng,
    # Chen, "Soft then Hard: Rethinking the Quantization in Neural Image Compression", ICML 2021;
    # VariableRateCodec's "encoder" stage).
    hard = False

    def relaxed(self, y: Tensor, offset: Tensor | float = 0.0) -> Tensor:
        """Training's stand-in for round(y - offset) + offset (`hard`)."""
        if self.hard:
            return round_ste(y, offset)
        return y + torch.empty_like(y).uniform_(-0.5, 0.5)

    def update_tables(self) -> None:
        pass

    def aux_loss(self) -> Tensor:
        return torch.zeros(())

    def aux_parameters(self) -> list[nn.Parameter]:
        return []
