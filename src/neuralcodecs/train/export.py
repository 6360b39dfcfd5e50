"""`neuralcodecs export RUN`: a training run's checkpoint -> shipped half-precision weights + manifest entry,
with the codec's Kodak bpp and PSNR measured from real files at every rate point."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .. import weights
from .loop import TrainConfig, build_model, trains_otherwise


def export(run: Path, kodak: str | None = None, command: str = "", workers: int = 1, int8: bool = False,
           average: Sequence[Path] = (), base: str | None = None) -> Path:
    """Write the run's weights where they load from (weights.weights_dir()), then, given `kodak`, measure them
    there; with `int8`, the large tensors in 8 bits (weights module docstring); with `average`, the mean of the
    run's parameters and those of these checkpoints / weights files (average_parameters); with `base` (a file in
    the weights folder), as an update of that file (its large tensors as 4-bit differences from the base's)."""
    if int8 and base:
        raise ValueError("an update stores differences from its base file: --int8 and --base exclude each other")
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = TrainConfig(**state["config"])
    cfg.lmbda = state["lmbdas"]
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    if average:
        average_parameters(model, average, state["config"])
    with torch.no_grad():  # what is tabulated (tables, a codec's integer gains) from what ships: half precision
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half())
        if int8:
            weights.round_to_int8(model.state_dict())
        if base:
            weights.round_to_update(model.state_dict(), weights.read_state(weights.weights_dir() / base))
    model.update_tables()
    steps = state.get("init_steps", 0) + state["step"]  # a run started from shipped weights counts theirs too
    entry = {"codec": cfg.codec, "settings": cfg.settings, "lmbdas": list(model.lmbdas), "steps": steps,
             "data": cfg.data, "batch": cfg.batch, "crop": cfg.crop, "command": command,
             **({"storage": "int8"} if int8 else {}),
             **({"averaged": [str(run / "checkpoint.pt"), *map(str, average)]} if average else {})}
    return write_measured(cfg.codec, model.state_dict(), entry, kodak, run / "kodak", workers, int8=int8, base=base)


def _member(path: Path, config: dict) -> dict[str, torch.Tensor]:
    """The state of an averaging member: a training checkpoint's model (refused if it trained another codec,
    other lambdas or other settings than `config`, the run's), or a weights file's tensors."""
    if path.name.endswith((".safetensors", ".safetensors.xz")):
        return weights.read_state(path)
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a training checkpoint (checkpoint.pt) nor a weights file")
    other = trains_otherwise(state["config"], config)
    if other:
        raise ValueError(f"cannot average {path}: it trained another {', '.join(other)} than the run")
    return state["model"]


@torch.no_grad()
def average_parameters(model: torch.nn.Module, members: Sequence[Path], config: dict) -> None:
    """Set each parameter of `model` to the mean of its value and its values in the `members` (checkpoints or
    weights files of the same codec, _member), uniformly: weight averaging (Izmailov et al., "Averaging weights
    leads to wider optima and better generalization", UAI 2018; Wortsman et al., "Model soups", ICML 2022).
    Points of one run at a low learning rate, or of runs fine-tuned from one start, lie in one basin, where the
    mean of the weights can sit nearer its floor than the points do. The tables derived from the parameters are
    rebuilt afterwards (update_tables; a factorized density's median is then the mean of the members' learned
    medians). Other buffers would stay the run's, so a model with batch-norm statistics is refused (they would
    have to be measured again for the mean weights)."""
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError("cannot average a model with batch-norm statistics (they would need measuring again)")
    states = [(path, _member(path, config)) for path in members]
    for name, p in model.named_parameters():
        for path, state in states:
            if name not in state or state[name].shape != p.shape:
                raise ValueError(f"cannot average: parameter {name} is missing or of another shape in {path}")
        p.copy_(torch.stack([p.float(), *(s[name].float() for _, s in states)]).mean(dim=0))


def write_measured(name: str, state: dict[str, torch.Tensor], entry: dict, kodak: str | None, out: Path,
                   workers: int = 1, xz: bool = False, int8: bool = False, base: str | None = None) -> Path:
    """Write `name`'s weights (xz-compressed with `xz`) and manifest entry, then (with `kodak`) code the Kodak
    images at every rate point from those weights, results under `out`, and add the curve to the entry."""
    path = weights.write(name, state, entry, xz, int8, base)
    if kodak:
        from ..eval import evaluate

        res = evaluate([name], kodak, out, workers=workers, anchor=name, progress=True)
        curve = res["curves"][name]
        entry["kodak"] = {k: curve[k] for k in ("quality", "bpp", "psnr-rgb", "ms-ssim-rgb") if k in curve}
        path = weights.write(name, state, entry, xz, int8, base)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and its manifest entry")
    return path
