"""Shipped trained weights: half-precision safetensors beside a manifest.

manifest.json maps a codec name to its file, sha256, settings, lambdas, training data and steps, the
command that trained it and its measured Kodak bpp / PSNR per quality. A file's fingerprint (stored in
every encoded file) is derived from the weights themselves, so decoding with other weights fails loudly.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

WEIGHTS_DIR = Path(__file__).resolve().parent
MANIFEST = "manifest.json"


def weights_dir() -> Path:
    """Where weights load from and export to: $NEURALCODECS_WEIGHTS if set (to try new weights without touching
    the installed ones), else the package's own folder."""
    return Path(os.environ.get("NEURALCODECS_WEIGHTS") or WEIGHTS_DIR)


def manifest() -> dict:
    path = weights_dir() / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def shipped_state(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    entry = manifest().get(name)
    if entry is None:
        raise ValueError(f"no trained weights are shipped for {name} (train them with `neuralcodecs train {name}` "
                         f"and `neuralcodecs export`)")
    return load_file(weights_dir() / entry["file"])


def export_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float tensors to half precision (what ships); integer tensors as they are."""
    return {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()).contiguous()
            for k, v in state.items()}


def fingerprint(state: dict[str, torch.Tensor]) -> bytes:
    """8 bytes of sha256 over the exported (half-precision) tensors in name order."""
    h = hashlib.sha256()
    for k, v in sorted(export_state(state).items()):
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    return h.digest()[:8]


def write(name: str, state: dict[str, torch.Tensor], entry: dict) -> Path:
    """Write `name`.safetensors and its manifest entry (sha256 of the file added) into weights_dir()."""
    from safetensors.torch import save_file

    directory = weights_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.safetensors"
    save_file(export_state(state), str(path))
    full = manifest()
    full[name] = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                  **entry, "fingerprint": fingerprint(state).hex()}
    (directory / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return path
