"""Product quantization of a learned codec's transforms (Stock et al. 2020 applied to our own weights): the
analysis and synthesis convolutions become codebooks and indices, the coding tables stay exactly as they
were, so the quantized codec still range-codes with the tables it was trained with.

    teacher codec (shipped weights)
      -> EM layer by layer (pq.quantize) on calibration crops run through the codec's own training forward
         (g_a's layers see photos, g_s's see the quantized latents of the student as quantized so far);
         then the GDNs' gammas, as 1x1 convolutions of x^2 (quantize_gdn)
      -> fine-tuning of the codewords, GDN and biases on the codec's own rate-distortion loss, the densities,
         their tables and the rate points' gains frozen (the tables are what the file's bits are coded with);
         with `reassign_every` the assignments move too (pq.PQWeight's latent weights)
      -> pack(): indices bit-packed, codebooks fp16, the other tensors fp16, the tables' counts (1..2^16) in 16
         bits, and the densities' parameters dropped (coding reads only the tables they were tabulated into)

A codec that ships such weights (codecs/balle2017_pq.py) loads them through unpack(), which rebuilds the full
state: the quantized weights from codebook[indices], the densities' parameters at their initial values.
parametrize_packed() loads such a file back as codebook[assignments] for further fine-tuning (`pq codec
--from FILE`).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from . import pq

# entropy-model buffers whose values minus one fit in 16 bits (tabulated.PRECISION: counts from 1 to 2^16),
# shipped as such
SIXTEEN_BIT = ("table_counts",)


def _entropy_parameter_names(codec: nn.Module) -> set[str]:
    ids = {id(p) for m in codec.entropy_models() for p in m.parameters()}
    return {n for n, p in codec.named_parameters() if id(p) in ids}


def _quantized(codec: nn.Module) -> dict[str, pq.PQWeight]:
    """{full name of the parametrized tensor ("g_a.0.weight", "g_a.1.gamma_param"): its PQWeight}."""
    out = {}
    for n, m in codec.named_modules():
        if isinstance(m, pq.PQWeight):
            module, rest = n.split(".parametrizations.")
            out[f"{module}.{rest.rsplit('.', 1)[0]}"] = m
    return out


def pack(codec: nn.Module) -> dict[str, Tensor]:
    """The compact state of a codec whose tensors quantize_codec() parametrized: `<tensor>.codebook` (fp16)
    and `<tensor>.indices` (uint8, log2 k bits per block) per quantized tensor, the densities' parameters
    dropped, table counts minus one in int16 (the bits of those unsigned values), every other tensor as
    export_state makes it."""
    from .. import weights

    out = {}
    for name, w in _quantized(codec).items():
        out[f"{name}.codebook"] = w.codebook.detach().half()
        out[f"{name}.indices"] = pq.packed_indices(w)
    dropped = _entropy_parameter_names(codec)
    for k, v in codec.state_dict().items():
        if ".parametrizations." in k or k in dropped:
            continue
        if k.split(".")[-1] in SIXTEEN_BIT:
            if v.numel() and (int(v.min()) < 1 or int(v.max()) > 2 ** 16):
                raise ValueError(f"{k} has counts outside 1..2^16")
            v = torch.from_numpy((v.numpy() - 1).astype(np.uint16).view(np.int16))
        out[k] = v
    return weights.export_state(out)


def _stored_weights(codec: nn.Module, state: dict[str, Tensor]):
    """(module, tensor name, PQWeight) for every quantized tensor of pack()'s state."""
    for key in (k for k in state if k.endswith(".codebook")):
        name = key[:-len(".codebook")]
        module_name, attr = name.rsplit(".", 1)
        module = codec.get_submodule(module_name)
        target = getattr(module, attr)
        codebook = state[key].float()
        n = target.numel() // codebook.shape[1]
        index = pq.unpacked_indices(state[f"{name}.indices"], n, codebook.shape[0])
        if len(index) != n or int(index.max()) >= codebook.shape[0]:
            raise ValueError(f"{name}: indices that do not fit its codebook")
        weight = pq.weight_of(module, codebook, index) if attr == "weight" else pq.PQWeight(codebook, index, target.shape)
        yield module, attr, weight


def unpack(codec: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """pack()'s state back to the codec's full state_dict (quantized tensors rebuilt, densities' parameters
    from the codec as built: unused in coding, which reads the tables)."""
    full = {k: v for k, v in state.items() if not k.endswith((".codebook", ".indices"))}
    prefix = {id(m): n for n, m in codec.named_modules()}
    for module, attr, weight in _stored_weights(codec, state):
        full[f"{prefix[id(module)]}.{attr}"] = weight(None).detach()
    for k, v in list(full.items()):
        if k.split(".")[-1] in SIXTEEN_BIT and v.dtype == torch.int16:
            full[k] = torch.from_numpy(v.numpy().view(np.uint16).astype(np.int32) + 1)
    own = codec.state_dict()
    for k in _entropy_parameter_names(codec):
        full.setdefault(k, own[k])
    return full


def parametrize_packed(codec: nn.Module, state: dict[str, Tensor], teacher: dict[str, Tensor]) -> nn.Module:
    """`codec` loaded from pack()'s state for further fine-tuning: its quantized tensors parametrized as
    codebook[assignments] again, the densities' parameters (which the file drops) from the teacher's state,
    whose tables the file holds."""
    from torch.nn.utils import parametrize

    full = unpack(codec, state)
    full.update({k: teacher[k] for k in _entropy_parameter_names(codec)})
    codec.load_state_dict(full)
    for module, attr, weight in _stored_weights(codec, state):
        parametrize.register_parametrization(module, attr, weight, unsafe=True)
    return codec


@torch.no_grad()
def quantize_gdn(codec: nn.Module, crops: Tensor, cfg: pq.PQConfig, d: int, batch: int = 8) -> None:
    """Every GDN's gamma as codebook[index] in blocks of d along its inputs, like a 1x1 convolution's weight:
    the normalization's sum_j gamma_ij x_j^2 is a 1x1 convolution of x^2, so the EM and the refinement weigh
    the errors with the Gram matrix of x^2 over the calibration crops. (The stored tensor is the square root
    of gamma, which is what is quantized; the weighting is gamma's. At a few percent of the weights, the
    GDNs would otherwise be half of the file.)"""
    from torch.nn.utils import parametrize

    from ..nn import GDN

    for m in [m for m in codec.modules() if isinstance(m, GDN)]:
        c = m.channels
        gram = torch.zeros(c, c, dtype=torch.float64)

        def hook(module, inputs, output):
            cols = inputs[0].detach().double().square().permute(0, 2, 3, 1).reshape(-1, c)
            gram.add_(cols.T @ cols)

        handle = m.register_forward_hook(hook)
        for i in range(0, len(crops), batch):
            codec(crops[i:i + batch])
        handle.remove()
        w = m.gamma_param.detach()
        blocks, groups = pq.blocks_of(w, d)
        codebook, assign = pq.em(blocks, groups, pq.diagonal_blocks(gram, d), cfg.codewords, cfg.em_iterations,
                                 cfg.seed)
        if d < c and cfg.refine_passes:
            assign = pq.refine(codebook, assign, w, gram, cfg.refine_passes)
        parametrize.register_parametrization(m, "gamma_param", pq.PQWeight(codebook, assign, w.shape), unsafe=True)


def quantize_codec(codec: nn.Module, cfg: pq.PQConfig, data, calibration: int = 64, steps: int = 2000,
                   batch: int = 8, lr: float = 1e-4, seed: int = 0, gdn_block: int = 4, layer_steps: int = 0,
                   reassign_every: int = 0, latent_lr: float | None = None, start: bool = False,
                   tune_gains: bool = False, log: Callable[[str], None] = print) -> nn.Module:
    """Product-quantize `codec` (a VariableRateCodec with trained weights, modified in place; its GDNs'
    gammas in blocks of `gdn_block`) and fine-tune it; `data` is a train.data.RandomCrops. With `layer_steps`,
    each layer's codewords are fine-tuned alone for that many steps right after its EM (the GDNs' together
    after theirs), before the next layer is quantized; then `steps` of everything but the frozen entropy
    models and gains; with `reassign_every`, that global fine-tuning moves the assignments too (latent weights
    at `latent_lr`, pq.fine_tune). `start`: the codec is already quantized (parametrize_packed: a shipped
    file fine-tuned further), no EM. `tune_gains`: the rate points' gains fine-tune too (the coding tables
    stay: they tabulate the densities, which stay frozen; what is derived from the gains is rebuilt).
    Returns the codec with its weights parametrized (pack() writes them)."""
    codec.train()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    crops = data.batch(calibration, rng)
    layers = pq.quantizable(codec, cfg)
    done = []
    t = time.time()

    def batches() -> Tensor:
        return data.batch(batch, rng)

    def after_layer(name: str, codebook: nn.Parameter) -> None:
        codec.train()
        pq.fine_tune(codec, [codebook], batches, layer_steps, lr, clip=1.0, log=log, label=f"{name} codewords")

    if not start:
        pq.quantize(codec, crops, cfg, batch=batch, after_layer=after_layer if layer_steps else None,
                    progress=lambda n: (done.append(n), log(f"quantized {len(done)}/{len(layers)} {n} ({time.time() - t:.0f} s)")))
        convs = {id(p) for p in pq.codeword_parameters(codec)}
        quantize_gdn(codec, crops, cfg, gdn_block, batch)
        log(f"quantized the GDNs ({time.time() - t:.0f} s)")
    codec.train()
    if layer_steps and not start:
        gdns = [p for p in pq.codeword_parameters(codec) if id(p) not in convs]
        pq.fine_tune(codec, gdns, batches, layer_steps, lr, clip=1.0, log=log, label="GDN codewords")
    frozen = {id(p) for p in codec.entropy_parameters()}
    if not tune_gains:
        frozen |= {id(codec.log_gain), id(codec.log_inv_gain)}
    pq.fine_tune(codec, [p for p in codec.parameters() if id(p) not in frozen], batches, steps, lr, clip=1.0,
                 log=log, label="fine-tune", reassign_every=reassign_every,
                 latent_lr=latent_lr)
    if tune_gains:
        # what coding derives from the gains (a hyperprior's gain grids) is rebuilt; the densities' tables are
        # kept as they were: the densities did not move, and tabulating them again from the half-precision
        # parameters a weights file holds does not give the very tables the teacher was shipped with (README:
        # "Why the constants are what they are")
        tables = {k: v.clone() for k, v in codec.state_dict().items() if k.split(".")[-1].startswith("table_")}
        codec.update_tables()
        for k, v in tables.items():
            module, attr = k.rsplit(".", 1)
            setattr(codec.get_submodule(module), attr, v)
    return codec.eval()
