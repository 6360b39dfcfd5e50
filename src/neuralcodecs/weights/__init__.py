"""Shipped trained weights: half-precision (or 8-bit, below) safetensors beside a manifest.

A file may be xz-compressed (NAME.safetensors.xz): worth it only where a file is mostly integers, as a
product-quantized codec's coding tables are (they shrink ~4x); fp16 weights barely compress.

Large weight tensors may ship in 8 bits (`export --int8`), half the bytes of fp16, for a repository that keeps
every shipped version: a float tensor of at least INT8_MIN_SIZE values and two or more dimensions is stored as
int8 values NAME and a per-output-channel scale NAME:scale (fp16), and loads as their product. The product of
an int8 and an fp16 number is exact in fp32, so the weights a file decodes with are the same on every machine.

An update of shipped weights (fine-tuning, weight averaging: `export --base FILE`) may ship as the differences
from a file that stays in the package as it is, NAME.update.safetensors.xz: each large tensor as differences in
[-DELTA_LIMIT, DELTA_LIMIT] steps of a per-output-channel fp16 scale (NAME:delta, NAME:delta_scale), loading as
the base file's tensor plus their product (one fp32 addition, the same on every machine), every other tensor
whole; the header names the base file and its sha256, which loading checks. A repository keeps every version
it shipped: an update costs a few MB where a new file costs the whole model again (README, "Weight averaging").

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


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The metadata of a safetensors file's bytes (an 8-byte header length, then the JSON header)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]).get("__metadata__", {})


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A weights file's stored tensors and metadata (.xz decompressed)."""
    from safetensors.torch import load

    data = path.read_bytes()
    data = lzma.decompress(data) if path.name.endswith(".xz") else data
    return load(data), safetensors_metadata(data)


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file, or of a .safetensors.xz one, as they load: 8-bit tensors as their
    float weights, an update's differences added to its base file's tensors (which must be unchanged)."""
    path = Path(path)
    stored, meta = _read(path)
    base = None
    if "base" in meta:
        base_path = path.parent / meta["base"]
        if not base_path.exists() or hashlib.sha256(base_path.read_bytes()).hexdigest() != meta["base_sha256"]:
            raise ValueError(f"{path} updates {meta['base']}, which is missing or not the file it was made from")
        base = read_state(base_path)
    return _as_loaded(stored, base)


INT8_MIN_SIZE = 4096  # smaller tensors (biases, GDN and density parameters, gains) stay fp16: bytes they save are few
SCALE = ":scale"
DELTA, DELTA_SCALE = ":delta", ":delta_scale"  # an update's differences from its base file (to_delta)
DELTA_LIMIT = 7  # 4-bit differences: what they cost in bytes and dB is measured in the README ("Weight averaging")


def _int8_stored(v: torch.Tensor) -> bool:
    return v.is_floating_point() and v.dim() >= 2 and v.numel() >= INT8_MIN_SIZE


def _quantize_slices(v: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values in [-limit, limit], fp16 scale per slice of the first dimension: a convolution's output
    channels, a transposed one's input channels), symmetric, max |value| -> limit. The scale is at least fp16's
    smallest normal number, 2^-14 (a subnormal one would not recompute exactly), so that applied to its own
    product it gives the same pair back and exporting twice changes nothing; near-dead slices get coarse steps."""
    flat = v.reshape(v.shape[0], -1)
    scale = (flat.abs().amax(dim=1) / limit).half().float().clamp_min(2.0 ** -14)
    q = torch.round(flat / scale[:, None]).clamp(-limit, limit).to(torch.int8)
    return q.reshape(v.shape), scale.half().reshape(-1, *[1] * (v.dim() - 1))


def to_int8(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight tensor in 8 bits: _quantize_slices to +-127."""
    return _quantize_slices(v.detach().float(), 127)


def _from_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float()  # exact: 8 bits times 11 fit fp32's 24


def _as_loaded(stored: dict[str, torch.Tensor], base: dict[str, torch.Tensor] | None = None
               ) -> dict[str, torch.Tensor]:
    """A file's tensors as they load: an 8-bit tensor NAME, with NAME:scale beside it, as their product; an
    update's NAME:delta and NAME:delta_scale as base[NAME] plus their product."""
    loaded = {k: v for k, v in stored.items() if not k.endswith((SCALE, DELTA, DELTA_SCALE))}
    for k in stored:
        if k.endswith(DELTA_SCALE):
            name = k[: -len(DELTA_SCALE)]
            if base is None or name not in base:
                raise ValueError(f"{name}: a difference with no base tensor to add it to")
            loaded[name] = _add_delta(base[name], stored[name + DELTA], stored[k])
        elif k.endswith(SCALE):
            loaded[k[: -len(SCALE)]] = _from_int8(stored[k[: -len(SCALE)]], stored[k])
    return loaded


# -- updates: differences from a base file ------------------------------------------------------------------
def _add_delta(base: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return base.float() + _from_int8(q, scale)  # one fp32 addition of exact values: the same on every machine


def to_delta(v: torch.Tensor, base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """v's differences from base, _quantize_slices to +-DELTA_LIMIT."""
    return _quantize_slices(v.detach().float() - base.float(), DELTA_LIMIT)


def _delta_stored(k: str, v: torch.Tensor, base: dict[str, torch.Tensor]) -> bool:
    """Whether tensor k of an update ships as differences: a large one (as in 8 bits) that its base also has."""
    return _int8_stored(v) and k in base and base[k].shape == v.shape


def round_to_update(state: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> None:
    """Replace, in place, every tensor that ships as a difference from `base` (a base file's read_state) by the
    weights it loads as. Storing those again must give the same differences (write checks it); the rounding of
    the addition can move a scale, so it repeats until nothing changes (once or twice)."""
    with torch.no_grad():
        for k, v in state.items():
            if _delta_stored(k, v, base):
                for _ in range(4):
                    loaded = _add_delta(base[k], *to_delta(v, base[k]))
                    if torch.equal(loaded, v.float()):
                        break
                    v.copy_(loaded)
                else:
                    raise ValueError(f"{k}: its differences from the base do not settle on a grid")


def round_to_int8(state: dict[str, torch.Tensor]) -> None:
    """Replace, in place, every tensor that ships in 8 bits by the weights it loads as."""
    with torch.no_grad():
        for v in state.values():
            if _int8_stored(v):
                v.copy_(_from_int8(*to_int8(v)))


def export_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float tensors to half precision (what ships); integer tensors as they are."""
    return {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()).contiguous()
            for k, v in state.items()}


def fingerprint(state: dict[str, torch.Tensor]) -> bytes:
    """8 bytes of sha256 over the tensors in name order: a float tensor in half precision where that holds it
    exactly (every tensor shipped in fp16), else in fp32 (an 8-bit tensor's product, weights not rounded yet),
    so that 8-bit weights and their fp16 rounding never share a fingerprint."""
    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        v = v.detach().cpu()
        if v.is_floating_point():
            half = v.half()
            v = half if torch.equal(half.float(), v.float()) else v.float()
        h.update(k.encode())
        h.update(v.contiguous().numpy().tobytes())
    return h.digest()[:8]


def write(name: str, state: dict[str, torch.Tensor], entry: dict, xz: bool = False, int8: bool = False,
          base: str | None = None) -> Path:
    """Write `name`.safetensors (`name`.safetensors.xz with `xz`) and its manifest entry (sha256 of the file
    added) into weights_dir(); the other forms of the file, if any, are removed. With `int8`, the large tensors
    ship in 8 bits: `state` must already hold the weights they load as (round_to_int8). With `base` (a weights
    file in weights_dir() that is not an update itself), an update: `name`.update.safetensors.xz, the large
    tensors as differences from the base file's (state rounded by round_to_update), the base file untouched."""
    from safetensors.torch import save

    directory = weights_dir()
    directory.mkdir(parents=True, exist_ok=True)
    plain, packed, update = (directory / f"{name}.{suffix}" for suffix in
                             ("safetensors", "safetensors.xz", "update.safetensors.xz"))
    path, others = (update, (plain, packed)) if base else ((packed, (plain, update)) if xz else (plain, (packed, update)))
    others = tuple(p for p in others if p.name != base)  # an update's base stays
    full = manifest()
    used = {e.get("base") for codec, e in full.items() if codec != name}
    if path.name in used or any(p.name in used and p.exists() for p in others):
        raise ValueError(f"{path.name} or a file it replaces is the base of another codec's update")
    stored, meta, base_state = export_state(state), {}, None
    if base:
        if int8:
            raise ValueError("an update stores differences from its base: it cannot be in 8 bits as well")
        base_stored, base_meta = _read(directory / base)
        if "base" in base_meta:
            raise ValueError(f"{base} is an update itself: give the file it updates")
        base_state = _as_loaded(base_stored)
        meta = {"base": base, "base_sha256": hashlib.sha256((directory / base).read_bytes()).hexdigest()}
    large = [k for k, v in state.items()
             if (_delta_stored(k, v, base_state) if base else int8 and _int8_stored(v))]
    for k in large:
        if base:
            stored[k + DELTA], stored[k + DELTA_SCALE] = to_delta(state[k], base_state[k])
            del stored[k]
        else:
            stored[k], stored[k + SCALE] = to_int8(state[k])
    loaded = _as_loaded(stored, base_state)
    off_grid = [k for k in large if not torch.equal(loaded[k], state[k].detach().cpu().float())]
    if off_grid:
        raise ValueError(f"{off_grid[0]}: round the state to what it ships as (round_to_int8, round_to_update) "
                         f"before writing it")
    data = save(stored, metadata=meta or None)
    path.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME) if xz or base else data)
    for other in others:
        other.unlink(missing_ok=True)
    full[name] = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                  **entry, **({"base": base} if base else {}),
                  "fingerprint": fingerprint(loaded).hex()}  # of the weights as they load
    (directory / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return path
