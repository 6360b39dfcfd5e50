"""A lower bound whose gradient can still pull a parameter back into the feasible region.

Ballé, Laparra, Simoncelli, "Density modeling of images using a generalized normalization
transformation" (ICLR 2016), appendix: with a plain `max(x, bound)` a parameter that falls below the
bound gets zero gradient and is stuck there forever. `LowerBound` passes the gradient through whenever
x is feasible (x >= bound) or whenever a descent step would move x up, back toward the bound (grad < 0).
"""
from __future__ import annotations

import torch
from torch import Tensor


class LowerBound(torch.autograd.Function):
    """forward: max(x, bound); backward: grad where x >= bound or grad < 0, else 0."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor) -> Tensor:  # type: ignore[override]
        bound = bound.to(x.dtype)
        ctx.save_for_backward(x, bound)
        return torch.maximum(x, bound)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        x, bound = ctx.saved_tensors
        # grad < 0: gradient descent increases x, i.e. moves it toward the feasible region.
        pass_through = (x >= bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


def lower_bound(x: Tensor, bound: float | Tensor) -> Tensor:
    """max(x, bound) with the gradient rule of `LowerBound`."""
    if not isinstance(bound, Tensor):
        bound = torch.tensor(bound, dtype=x.dtype, device=x.device)
    return LowerBound.apply(x, bound)
