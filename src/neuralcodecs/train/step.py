"""The one training step, used by the training loop, by per-image fitting (coconet) and by any other
optimization of a model here.

    model.loss(batch) -> {"loss": scalar, other metrics...}    the model owns its objective (learned codecs:
                                                               rate-distortion, LearnedCodec.loss)
    backward, gradient clipping, optimizer step; then the auxiliary step (entropy models' quantiles) if any

A non-finite loss skips the step (no update) and returns None: one bad batch must not poison hours of
unattended training.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from .distributed import Ranks


def train_step(model: Any, batch: Any, opt: torch.optim.Optimizer, aux_opt: torch.optim.Optimizer | None = None,
               clip: float | None = 1.0, autocast: contextlib.AbstractContextManager | None = None,
               ranks: Ranks = Ranks()) -> dict[str, float] | None:
    """One optimizer step on model.loss(batch); returns its metrics as floats, or None if it was skipped.
    Under torchrun (`ranks`, distributed.py) the gradients are averaged over the processes before the step."""
    with autocast or contextlib.nullcontext():
        out = model.loss(batch)
    loss = out["loss"]
    opt.zero_grad(set_to_none=True)
    if not ranks.everywhere(bool(torch.isfinite(loss)), loss.device):
        return None
    loss.backward()
    params = [p for g in opt.param_groups for p in g["params"]]
    ranks.average(params)
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    if aux_opt is not None:
        aux_opt.zero_grad(set_to_none=True)
        model.aux_loss().backward()
        ranks.average([p for g in aux_opt.param_groups for p in g["params"]])
        aux_opt.step()
    return {k: float(v.detach()) for k, v in out.items()}
