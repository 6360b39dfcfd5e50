"""The one training loop for every learned codec (nanoGPT-style: it fits on a screen).

Each step is train_step (step.py) on the codec's own loss, by default (LearnedCodec.loss)

    loss = mean over the batch of  lmbda * 255^2 * MSE(x, x_hat) + bits / pixels

A learned codec's forward(x) returns {"x_hat", "bits" (per sample), "lmbda" (per sample)}: a
variable-rate model picks each sample's rate point itself, so the loop never needs to know. A codec that
makes several reconstructions per input (one per path or per iteration) returns them stacked along the
batch with the matching "target" (x repeated); the loss is then over all of them. Entropy
models' quantile (auxiliary) parameters get their own optimizer on `model.aux_loss()`, as in
CompressAI. A checkpoint (model, optimizers, step, every RNG state) is written every few minutes, on
Ctrl-C or SIGTERM and at the end, so `--resume` continues exactly; coding tables are rebuilt when training ends.
The same loop runs data-parallel under torchrun (`torchrun --nproc_per_node N -m neuralcodecs train ...`,
distributed.py): gradients averaged over the processes, rank 0 writes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm


from .. import weights
from ..registry import create_codec, get_entry
from .data import RandomCrops
from .distributed import Ranks
from .step import train_step


@dataclass
class TrainConfig:
    codec: str
    data: list[str]
    out: str
    steps: int
    lmbda: list[float] | None = None  # None: the codec's own lambdas
    settings: dict = field(default_factory=dict)  # codec architecture settings, if any
    batch: int = 8
    crop: int = 128
    lr: float = 1e-4
    # the quantiles must travel ~10 units from their initial guess; at 1e-3 Adam needs ~10k steps for that
    aux_lr: float = 1e-2
    # lr of the entropy models' densities (None: lr). Adam moves a log-scale parameter by about lr per step,
    # so at 1e-4 a density needs thousands of steps to follow latents whose scale the transforms change
    # within hundreds (theis2017's densities fell so far behind its coefficients that the rate was grossly
    # overestimated; README: "Why the constants are what they are")
    entropy_lr: float | None = None
    lr_drop_step: int | None = None  # lr / 10 from this step on (the usual last phase)
    seed: int = 0
    device: str = "cpu"
    # bfloat16 autocast: off by default, slower than float32 on a CPU without fast bf16 kernels
    # (benchmarks/train_step.py; README: "Learned codecs: training and weights"); worth trying on a GPU
    bf16: bool = False
    channels_last: bool = True
    compile: bool = False
    threads: int | None = None
    checkpoint_minutes: float = 5.0
    # every this many steps the weights are also kept, OUT/snapshots/step-N.pt: the members of weight averaging
    # (`export --average`, README: "Weight averaging")
    snapshot_every: int | None = None
    max_images: int | None = None
    # start from weights: "shipped" (the package's), "codec:NAME" (another codec's shipped weights, where names
    # and shapes match) or a .safetensors(.xz) file; several, comma-separated, load in order (e.g.
    # "shipped,codec:minnen2018": the codec's own weights, then another's transforms over them)
    init: str | None = None
    stage: str | None = None  # the codec's training stage (its `stages`; None: the first)
    # iterations a progressive (recurrent) codec unrolls per training step (None: all of its qualities): fewer
    # make a step cheaper, and only the first `unroll` iterations are scored (benchmarks/toderici_cpu.py)
    unroll: int | None = None


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """The codec `cfg` trains, in its training form (the name's fixed settings and the run's own)."""
    entry = get_entry(cfg.codec)
    return entry.cls.for_training(lmbdas=cfg.lmbda, name=cfg.codec, **{**entry.defaults, **cfg.settings})


def _autocast(cfg: TrainConfig):
    if not cfg.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16)


def trains_otherwise(config: dict, other: dict) -> list[str]:
    """What two runs' configs (TrainConfig as dicts) train differently (codec, lambdas, settings): a run resumed,
    or a checkpoint averaged with another run's, must train the same; the schedule may differ."""
    return [k for k in ("codec", "lmbda", "settings") if config.get(k) != other.get(k)]


def _save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind


def make_optimizers(model, cfg: TrainConfig) -> tuple[torch.optim.Adam, torch.optim.Adam | None]:
    """Adam over two groups, the rest and the entropy parameters (the training loop sets each group's lr every
    step), and Adam on the aux parameters (the densities' quantiles, at aux_lr; None: the model has none)."""
    aux = list(model.aux_parameters())
    aux_ids = {id(p) for p in aux}
    density = [p for p in model.entropy_parameters() if id(p) not in aux_ids]
    rest = aux_ids | {id(p) for p in density}
    opt = torch.optim.Adam([{"params": [p for p in model.parameters() if id(p) not in rest]}, {"params": density}],
                           lr=cfg.lr)
    return opt, (torch.optim.Adam(aux, lr=cfg.aux_lr) if aux else None)


def save_checkpoint(path: Path, model, opt, aux_opt, step: int, rng: np.random.Generator, cfg: TrainConfig,
                    init_steps: int = 0) -> None:
    state = {"model": model.state_dict(), "opt": opt.state_dict(),
             "aux_opt": aux_opt.state_dict() if aux_opt else None, "step": step, "init_steps": init_steps,
             "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state(cfg.device) if cfg.device.startswith("cuda") else None,
             "config": dataclasses.asdict(cfg),
             "lmbdas": list(model.lmbdas)}
    _save(state, path)


def initialize(model, cfg: TrainConfig) -> int:
    """A new run from earlier weights (`--init`; e.g. the shipped ones when a machine lost its runs/; the optimizer
    starts fresh): several sources, comma-separated, apply in order, each over what the ones before it loaded.
    Returns the training steps the weights had already had (the manifest knows, for shipped ones; else 0)."""
    init_steps = 0
    for source in cfg.init.split(","):
        if source.startswith("codec:"):
            # another codec's shipped weights, where names and shapes match (e.g. balle2018 from balle2017's
            # transforms and gains); the rest keeps what it had
            # (as that codec loads them, so a module's load hooks map an older layout's names)
            own = model.state_dict()
            taken = {k: v for k, v in create_codec(source[6:]).state_dict().items()
                     if k in own and own[k].shape == v.shape}
            model.load_state_dict({**own, **taken})
            print(f"{len(taken)} of {len(own)} tensors from {source[6:]}'s weights")
        else:
            model.load_weights(weights.shipped_state(cfg.codec) if source == "shipped" else weights.read_state(source))
        if source == "shipped":
            init_steps = weights.manifest()[cfg.codec].get("steps", 0)
    print(f"initialized from {cfg.init}")
    return init_steps


def resume_from(ckpt: Path, model, opt, aux_opt, rng: np.random.Generator, cfg: TrainConfig) -> tuple[int, int]:
    """Load a checkpoint's weights, optimizers and random states; returns (its step, its init_steps). A resumed
    run may change its schedule (steps, lr, stage, crops, threads) but not what it trains."""
    state = torch.load(ckpt, map_location=cfg.device, weights_only=False)
    changed = trains_otherwise(state["config"], dataclasses.asdict(cfg))
    if changed:
        raise ValueError(f"{ckpt} trains other {', '.join(changed)} ({', '.join(str(state['config'][k]) for k in changed)}): "
                         f"resume it with those, or choose another --out")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    if aux_opt:
        aux_opt.load_state_dict(state["aux_opt"])
    rng.bit_generator.state = state["rng"]
    # map_location moved every tensor to the device, the CPU generator's state too; it must come back
    torch.set_rng_state(state["torch_rng"].cpu())
    if state.get("cuda_rng") is not None and cfg.device.startswith("cuda"):  # training noise drawn on the GPU
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), cfg.device)
    print(f"resumed {ckpt} at step {state['step']}")
    return state["step"], state.get("init_steps", 0)


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    if ckpt.exists() and not resume:
        raise FileExistsError(f"{ckpt} exists: continue it with --resume, or choose another --out")
    ranks = Ranks.from_environment(cfg.device)  # one process, or one of torchrun's (distributed.py)
    cfg = dataclasses.replace(cfg, device=ranks.device(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg).to(cfg.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # A stage only freezes parameters (requires_grad), so the optimizers below have the same shape in every
    # stage and a run can continue into its next stage with --resume.
    model.set_stage(cfg.stage or model.stages[0])
    if cfg.unroll is not None:
        model.set_unroll(cfg.unroll)
    opt, aux_opt = make_optimizers(model, cfg)
    base_lrs = (cfg.lr, cfg.entropy_lr or cfg.lr)  # the lr drop divides both
    step, init_steps = 0, 0  # init_steps: the training steps the initial weights had already had
    if ckpt.exists():
        step, init_steps = resume_from(ckpt, model, opt, aux_opt, rng, cfg)
    elif cfg.init:
        init_steps = initialize(model, cfg)
    if ranks.world > 1:
        # the same weights everywhere, and each process its own crops and noise from here on (seeded by rank and
        # step: a resumed data-parallel run draws other crops than one never stopped, unlike a single process)
        ranks.broadcast(model)
        rng = np.random.default_rng([cfg.seed, ranks.rank, step])
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, ranks.rank, step]).generate_state(1)[0]))
        print(f"process {ranks.rank} of {ranks.world} on {cfg.device}")
    if ranks.main:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    # crops are whole multiples of what the codec codes (balle2018's z needs multiples of 64)
    crop = -(-cfg.crop // model.pad_to) * model.pad_to
    if crop != cfg.crop:
        print(f"crops of {crop} pixels: {cfg.codec} codes multiples of {model.pad_to}")
    if not ranks.main:
        ranks.barrier()  # rank 0 decodes the photos into the cache first; the others then read it
    data = RandomCrops(cfg.data, crop, cfg.max_images, cache=out / "photos.npz")
    if ranks.main:
        ranks.barrier()
    if cfg.compile:
        model.compile()  # compiles forward() in place; loss() calls it
    stop = StopRequest()
    model.train()
    last_save, log, skipped = time.time(), {"step": [], "loss": [], "bpp": [], "psnr": []}, 0
    logged = 0  # rows of `log` already in log.csv
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.codec}", dynamic_ncols=True, disable=not ranks.main)
    try:
        while step < cfg.steps:
            # every process stops at the same step, or one would wait forever in the next step's all-reduce
            if not ranks.everywhere(not stop.requested, cfg.device):
                print(f"\nstopped at step {step}; checkpoint saved, continue with --resume")
                break
            # set every step (not only at the drop) so a resumed run follows the schedule it is given now
            drop = 10 if cfg.lr_drop_step is not None and step >= cfg.lr_drop_step else 1
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base / drop
            x = data.batch(cfg.batch, rng).to(cfg.device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            metrics = train_step(model, x, opt, aux_opt, autocast=_autocast(cfg), ranks=ranks)
            if metrics is None:
                skipped += 1
                continue
            step += 1
            log["step"].append(step)
            log["loss"].append(metrics["loss"])
            log["bpp"].append(metrics["bpp"])
            log["psnr"].append(-10 * math.log10(max(metrics["mse"], 1e-10)))
            if step % 10 == 0:
                bar.set_postfix({**{k: f"{np.mean(v[-50:]):.4g}" for k, v in log.items() if k != "step"},
                                 "skipped": skipped})
            bar.update(1)
            if ranks.main and cfg.snapshot_every and step % cfg.snapshot_every == 0:
                save_snapshot(out / "snapshots" / f"step-{step:07d}.pt", model, step, cfg)
            if ranks.main and time.time() - last_save > 60 * cfg.checkpoint_minutes:
                save_checkpoint(ckpt, model, opt, aux_opt, step, rng, cfg, init_steps)
                logged = _append_log(out / "log.csv", log, logged)
                last_save = time.time()
    finally:
        bar.close()
        if ranks.main:
            # coding tables follow the trained densities, never a manual step; the checkpoint holds them
            model.update_tables()
            save_checkpoint(ckpt, model, opt, aux_opt, step, rng, cfg, init_steps)
            _append_log(out / "log.csv", log, logged)
        stop.close()
    if step >= cfg.steps:  # not after an interrupt: the other processes may be gone
        ranks.check_in_step(model)
    ranks.close()
    return ckpt


def save_snapshot(path: Path, model, step: int, cfg: TrainConfig) -> None:
    """The weights at this step with what `export --average` checks them by (no optimizer: a third of a
    checkpoint's bytes)."""
    path.parent.mkdir(exist_ok=True)
    _save({"model": model.state_dict(), "step": step, "config": dataclasses.asdict(cfg)}, path)


def _append_log(path: Path, log: dict[str, list], start: int) -> int:
    """Append the per-step rows since `start` to log.csv, written with each checkpoint so that the log and
    the checkpoint agree on where the run is (a resumed run redoes, and logs, the steps after it)."""
    new = not path.exists()
    # a SIGTERM can land between the appends of one step's values: write only the steps that are complete
    complete = min(map(len, log.values()))
    with open(path, "a") as f:
        if new:
            f.write(",".join(log) + "\n")
        for i in range(start, complete):
            f.write(",".join(f"{log[k][i]:.6g}" for k in log) + "\n")
    return complete


class StopRequest:
    """Ctrl-C (SIGINT) and `kill` (SIGTERM; background jobs of a non-interactive shell ignore SIGINT) ask the loop
    to stop; it finishes the step it is in, then checkpoints. The handler only sets a flag: an exception raised
    from it could land between the optimizer's update and the step count, and the checkpoint would then hold
    weights one step ahead of its counter and data stream, so --resume would not continue exactly."""

    def __init__(self):
        self.requested = False
        self._previous = {s: signal.signal(s, self._request) for s in (signal.SIGINT, signal.SIGTERM)}

    def _request(self, signum, frame) -> None:
        self.requested = True

    def close(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
