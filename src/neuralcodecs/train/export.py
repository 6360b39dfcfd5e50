"""`neuralcodecs export RUN`: a training run's checkpoint -> shipped half-precision weights + manifest entry,
with the codec's Kodak bpp and PSNR measured from real files at every rate point."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import weights
from .loop import TrainConfig, build_model


def export(run: Path, kodak: str | None = None, command: str = "", workers: int = 1, int8: bool = False) -> Path:
    """Write the run's weights where they load from (weights.weights_dir()), then measure them on Kodak; with
    `int8`, the large tensors in 8 bits (weights module docstring)."""
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = TrainConfig(**state["config"])
    cfg.lmbda = state["lmbdas"]
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    with torch.no_grad():  # what is tabulated (tables, a codec's integer gains) from what ships: half precision
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half())
        if int8:
            weights.round_to_int8(model.state_dict())
    model.update_tables()
    steps = state.get("init_steps", 0) + state["step"]  # a run started from shipped weights counts theirs too
    entry = {"codec": cfg.codec, "settings": cfg.settings, "lmbdas": list(model.lmbdas), "steps": steps,
             "data": cfg.data, "batch": cfg.batch, "crop": cfg.crop, "command": command,
             **({"storage": "int8"} if int8 else {})}
    return write_measured(cfg.codec, model.state_dict(), entry, kodak, run / "kodak", workers, int8=int8)


def write_measured(name: str, state: dict[str, torch.Tensor], entry: dict, kodak: str | None, out: Path,
                   workers: int = 1, xz: bool = False, int8: bool = False) -> Path:
    """Write `name`'s weights (xz-compressed with `xz`) and manifest entry, then (with `kodak`) code the Kodak
    images at every rate point from those weights, results under `out`, and add the curve to the entry."""
    path = weights.write(name, state, entry, xz, int8)
    if kodak:
        from ..eval import evaluate

        res = evaluate([name], kodak, out, workers=workers, anchor=name, progress=True)
        curve = res["curves"][name]
        entry["kodak"] = {k: curve[k] for k in ("quality", "bpp", "psnr-rgb", "ms-ssim-rgb") if k in curve}
        path = weights.write(name, state, entry, xz, int8)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and its manifest entry")
    return path
