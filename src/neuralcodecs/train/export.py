"""`neuralcodecs export RUN`: a training run's checkpoint -> shipped half-precision weights + manifest entry,
with the codec's Kodak bpp and PSNR measured from real files at every rate point."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .. import weights
from .loop import TrainConfig, build_model


def export(run: Path, kodak: str | None = None, command: str = "", workers: int = 1, int8: bool = False,
           average: Sequence[Path] = ()) -> Path:
    """Write the run's weights where they load from (weights.weights_dir()), then measure them on Kodak; with
    `int8`, the large tensors in 8 bits (weights module docstring); with `average`, the mean of the run's
    parameters and those of these checkpoints / weights files (average_parameters)."""
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = TrainConfig(**state["config"])
    cfg.lmbda = state["lmbdas"]
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    if average:
        average_parameters(model, [_parameters_of(p) for p in average])
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
             **({"storage": "int8"} if int8 else {}),
             **({"averaged": [str(run / "checkpoint.pt"), *map(str, average)]} if average else {})}
    return write_measured(cfg.codec, model.state_dict(), entry, kodak, run / "kodak", workers, int8=int8)


def _parameters_of(path: Path) -> dict[str, torch.Tensor]:
    """The parameters stored in a training checkpoint (its "model") or a weights file."""
    if path.name.endswith((".safetensors", ".safetensors.xz")):
        return weights.read_state(path)
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@torch.no_grad()
def average_parameters(model: torch.nn.Module, others: Sequence[dict[str, torch.Tensor]]) -> None:
    """Set each parameter of `model` to the mean of its value and its values in `others` (state dicts of the
    same codec), uniformly: weight averaging (Izmailov et al., "Averaging weights leads to wider optima and
    better generalization", UAI 2018; Wortsman et al., "Model soups", ICML 2022). Points of one run at a low
    learning rate, or of runs fine-tuned from one start, lie in one basin, where the mean of the weights sits
    nearer its floor than the points do (measured: README, "Weight averaging"). Buffers stay the run's: the
    tables derived from the parameters are rebuilt afterwards (update_tables)."""
    for name, p in model.named_parameters():
        values = [o.get(name) for o in others]
        if any(v is None or v.shape != p.shape for v in values):
            missing = next(i for i, v in enumerate(values) if v is None or v.shape != p.shape)
            raise ValueError(f"cannot average: parameter {name} is missing or of another shape in member "
                             f"{missing + 1} (not the same codec?)")
        p.copy_(torch.stack([p.float(), *(v.float() for v in values)]).mean(dim=0))


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
