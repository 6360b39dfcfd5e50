"""Shipped trained weights: half-precision safetensors beside a manifest.

A file may be xz-compressed (NAME.safetensors.xz): worth it only where a file is mostly integers, as a
product-quantized codec's coding tables are (they shrink ~4x); fp16 weights barely compress.

manifest.json maps a codec name to its file, sha256, settings, lambdas, training data and steps, the
command that trained it and its measured Kodak bpp / PSNR per quality. A file's fingerprint (stored in
every encoded file) is derived from the weights themselves, so decoding with other weights fails loudly.
"""
from __future__ import annotations

import hashlib
import json
import lzma
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
    entry = manifest().get(name)
    if entry is None:
        raise ValueError(f"no trained weights are shipped for {name} (train them with `neuralcodecs train {name}` "
                         f"and `neuralcodecs export`)")
    return read_state(weights_dir() / entry["file"])


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file, or of a .safetensors.xz one."""
    from safetensors.torch import load

    data = Path(path).read_bytes()
    return load(lzma.decompress(data) if str(path).endswith(".xz") else data)


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


def write(name: str, state: dict[str, torch.Tensor], entry: dict, xz: bool = False) -> Path:
    """Write `name`.safetensors (`name`.safetensors.xz with `xz`) and its manifest entry (sha256 of the file
    added) into weights_dir(); the other form of the file, if any, is removed."""
    from safetensors.torch import save

    directory = weights_dir()
    directory.mkdir(parents=True, exist_ok=True)
    plain, packed = directory / f"{name}.safetensors", directory / f"{name}.safetensors.xz"
    path, other = (packed, plain) if xz else (plain, packed)
    data = save(export_state(state))
    path.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME) if xz else data)
    other.unlink(missing_ok=True)
    full = manifest()
    full[name] = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                  **entry, "fingerprint": fingerprint(state).hex()}
    (directory / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return path
