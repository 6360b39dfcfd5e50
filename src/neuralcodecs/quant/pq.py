"""Product quantization of a network's weights, as in Stock, Joulin, Gribonval, Graham, Jégou, "And the Bit
Goes Down: Revisiting the Quantization of Neural Networks", ICLR 2020.

    every conv / linear weight (but the first layer) -> blocks of d values      (d: see `block_size`)
      -> each block replaced by the nearest of k codewords of its layer's codebook, the distance weighted by
         the layer's input activations, so what is minimized is the error of the layer's OUTPUT,
         ||X (W - W_hat)||^2, not of the weights (EM: E-step assigns under that distance, M-step solves for
         each codeword in closed form through the pseudo-inverse)
      -> layer by layer from the input upwards, each layer's activations taken from the already quantized
         network (so later layers correct what earlier ones lost)
      -> codewords fine-tuned by distillation from the uncompressed teacher (no labels), assignments fixed
    size = indices (log2 k bits per block) + fp16 codebooks + every other tensor in fp16

Block sizes (the paper's small-block setting; `large` doubles them): a k x k kernel is one block (d = k*k,
depthwise included: one channel's kernel), a 1x1 convolution or a linear layer is cut along its inputs into
blocks of 4 (d = 8 in the large setting; for k x k kernels the large setting pairs two input channels).
A layer with fewer than MIN_BLOCKS_PER_CODEWORD * k blocks would spend more on its codebook than it saves:
it stays in fp16, as the first layer does.

Per block j, reading input group g(j) (the input channels it multiplies), the output error is
(w_j - c)^T H_g (w_j - c) with H_g = X_g^T X_g, the Gram matrix of those inputs over the calibration images.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_BLOCKS_PER_CODEWORD = 4
RIDGE = 1e-6  # relative to the Gram matrices' mean diagonal: keeps the M-step's solve well posed


@dataclass
class PQConfig:
    codewords: int = 256   # k
    large: bool = False    # the paper's large-block setting
    em_iterations: int = 20
    skip: tuple[str, ...] = ()  # module names left in fp16 (the first layer is always)
    # (substring of module names, d) pairs: the block size of the 1x1 convolutions and linear layers whose
    # names contain the substring (the first match), for the small-block setting (`large` doubles it). A
    # smaller d spends more bits where errors cost most: layers whose error no nonlinearity absorbs
    # (EfficientNet's linear-bottleneck projections feed the residual stream directly; measured on
    # EfficientNet-Lite0: three of them alone at d = 4 cost 10 points of top-1, the classifier layer or the
    # head conv alone cost none), a larger one saves where they cost little
    sizes: tuple[tuple[str, int], ...] = ()
    seed: int = 0

    def size_of(self, name: str) -> int | None:
        return next((d for pattern, d in self.sizes if pattern in name), None)


def block_size(module: nn.Module, large: bool, size: int | None = None) -> int:
    """d for a layer: a whole kernel, or 4 inputs of a 1x1 conv / linear layer (`size` instead, when given;
    doubled when `large`)."""
    kh, kw = module.weight.shape[2:] if module.weight.dim() == 4 else (1, 1)
    if kh * kw > 1:
        cin = module.weight.shape[1]
        return kh * kw * (2 if large and cin % 2 == 0 else 1)
    return (size or 4) * (2 if large else 1)


def _blocks(w: Tensor, d: int, conv_groups: int = 1) -> tuple[Tensor, Tensor]:
    """(blocks (n, d), the input group each block reads (n,)) for a conv/linear weight; the groups number
    the layer's input channels (or channel sets) so that groups index Gram matrices. For a grouped conv
    (depthwise: one group per channel) a block of output channel o reads the channels of o's group."""
    if w.dim() == 2:
        w = w[:, :, None, None]
    cout, cin, kh, kw = w.shape
    if kh * kw > 1:  # kernels: d = kh*kw (or 2 kernels of consecutive input channels)
        per = d // (kh * kw)
        b = w.reshape(cout, cin // per, per * kh * kw)
        first = (torch.arange(cout) // (cout // conv_groups)) * (cin // per)  # the group's first channel set
        g = first[:, None] + torch.arange(cin // per)[None, :]
    else:
        b = w.reshape(cout, cin // d, d)
        g = torch.arange(cin // d).repeat(cout, 1)
    return b.reshape(-1, d), g.reshape(-1)


def _unblocks(b: Tensor, shape: torch.Size) -> Tensor:
    return b.reshape(shape)


class GramCollector:
    """Accumulates the Gram matrices H_g of a layer's input groups from forward hooks."""

    def __init__(self, module: nn.Module, d: int):
        self.module, self.d, self.h, self.count = module, d, None, 0

    def __call__(self, module, inputs, output):
        x = inputs[0].detach().double()
        m = self.module
        if isinstance(m, nn.Linear):
            cols = x.reshape(-1, x.shape[-1])                       # (N, cin)
            groups = cols.reshape(cols.shape[0], -1, self.d)        # (N, G, d)
        else:
            kh, kw = m.weight.shape[2:]
            if kh * kw == 1:
                cols = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
                groups = cols.reshape(cols.shape[0], -1, self.d)
            else:
                # patches of every input channel (the values one kernel multiplies), per channel group
                pad = m.padding if isinstance(m.padding, tuple) else (0, 0)
                if hasattr(m, "static_padding"):
                    x = m.static_padding(x.float()).double()
                p = F.unfold(x, (kh, kw), dilation=m.dilation, padding=pad, stride=m.stride)  # (N, cin*kh*kw, L)
                n, _, length = p.shape
                per = self.d // (kh * kw)
                groups = p.reshape(n, x.shape[1] // per, per * kh * kw, length).permute(0, 3, 1, 2)
                groups = groups.reshape(-1, x.shape[1] // per, self.d)
        h = torch.einsum("ngi,ngj->gij", groups, groups)
        self.h = h if self.h is None else self.h + h
        self.count += groups.shape[0]


def em(blocks: Tensor, groups: Tensor, gram: Tensor, k: int, iterations: int, seed: int) -> tuple[Tensor, Tensor]:
    """Codebook (k, d) and assignments (n,) minimizing sum_j (w_j - c_a(j))^T H_g(j) (w_j - c_a(j))."""
    n, d = blocks.shape
    gen = torch.Generator().manual_seed(seed)
    w, h = blocks.double(), gram.double()
    h = h + RIDGE * h.diagonal(dim1=1, dim2=2).mean() * torch.eye(d, dtype=h.dtype)
    codebook = w[torch.randperm(n, generator=gen)[:k]].clone()
    hw = torch.einsum("nij,nj->ni", h[groups], w) if n * d * d < 5e7 else None  # else recomputed per step
    for _ in range(iterations):
        # E-step, per group: c^T H c - 2 c^T H w for every codeword, blockwise to bound memory
        assign = torch.empty(n, dtype=torch.long)
        for g in groups.unique():
            idx = (groups == g).nonzero().squeeze(1)
            hc = codebook @ h[g]                                     # (k, d)
            cost = (hc * codebook).sum(1)[None, :] - 2 * w[idx] @ hc.T
            assign[idx] = cost.argmin(1)
        # M-step: c_k = (sum_j H_g(j))^+ sum_j H_g(j) w_j over the blocks assigned to k
        counts = torch.zeros(k, h.shape[0], dtype=h.dtype).index_put_((assign, groups), torch.ones(n, dtype=h.dtype),
                                                                      accumulate=True)
        a = torch.einsum("kg,gij->kij", counts, h)
        hw_ = hw if hw is not None else torch.einsum("nij,nj->ni", h[groups], w)
        b = torch.zeros(k, d, dtype=h.dtype).index_add_(0, assign, hw_)
        used = counts.sum(1) > 0
        codebook[used] = torch.linalg.lstsq(a[used], b[used, :, None]).solution[..., 0]
        # an unused codeword restarts on a random block
        if (~used).any():
            codebook[~used] = w[torch.randint(n, (int((~used).sum()),), generator=gen)]
    return codebook.float(), assign


class PQWeight(nn.Module):
    """A weight held as codebook[assignments], for fine-tuning the codewords (parametrization of .weight)."""

    def __init__(self, codebook: Tensor, assign: Tensor, shape: torch.Size):
        super().__init__()
        self.codebook = nn.Parameter(codebook)
        self.register_buffer("assign", assign)
        self.shape = tuple(shape)

    def forward(self, _original: Tensor) -> Tensor:
        return self.codebook[self.assign].reshape(self.shape)


def quantizable(model: nn.Module, cfg: PQConfig) -> list[tuple[str, nn.Module]]:
    """The conv and linear layers to quantize, in forward order (the order modules are registered, which is
    the order for the networks here), the first layer and `skip` excepted."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    out = []
    for i, (name, m) in enumerate(layers):
        d = block_size(m, cfg.large, cfg.size_of(name))
        n_blocks = m.weight.numel() // d
        if i == 0 or name in cfg.skip or n_blocks < MIN_BLOCKS_PER_CODEWORD * cfg.codewords:
            continue
        if m.weight.dim() == 4 and m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3] % d:
            continue
        if m.weight.dim() == 2 and m.weight.shape[1] % d:
            continue
        out.append((name, m))
    return out


@torch.no_grad()
def quantize(model: nn.Module, calibration: Tensor, cfg: PQConfig, batch: int = 16,
             progress: Callable[[str], None] | None = None) -> dict:
    """Product-quantize `model` in place (weights become codebook[assignments] through a parametrization) from
    calibration inputs; returns {name: (codebook, assignments)}. Layer by layer from the input upwards: the
    Gram matrices of each layer come from the network as quantized so far."""
    from torch.nn.utils import parametrize

    model.eval()
    result = {}
    for name, m in quantizable(model, cfg):
        d = block_size(m, cfg.large, cfg.size_of(name))
        collect = GramCollector(m, d)
        hook = m.register_forward_hook(collect)
        for i in range(0, len(calibration), batch):
            model(calibration[i:i + batch])
        hook.remove()
        blocks, groups = _blocks(m.weight.detach(), d, getattr(m, "groups", 1))
        codebook, assign = em(blocks, groups, collect.h, cfg.codewords, cfg.em_iterations, cfg.seed)
        parametrize.register_parametrization(m, "weight", PQWeight(codebook, assign, m.weight.shape), unsafe=True)
        result[name] = (codebook, assign)
        if progress:
            progress(name)
    return result


def codeword_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [m.codebook for m in model.modules() if isinstance(m, PQWeight)]


class Distillation:
    """Fine-tuning objective for train_step: the student's output distribution against the teacher's (KL),
    no labels; only the codewords train (the parametrization averages nothing itself: every block assigned to
    a codeword adds its gradient to that codeword's, and Adam's per-parameter scaling makes the sum act like
    the paper's average).

    `taps`: pairs (student module, teacher module) whose outputs should also agree, e.g. every block of the
    network: their squared error, relative to the teacher output's mean square, averaged over the taps and
    weighted by `feature_weight`, is added. With a thousand calibration images the final output alone is a
    thin signal; matching every block's output (the paper's per-layer fine-tuning, done jointly) gives each
    codeword a target close to it."""

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float = 1.0,
                 taps: list[tuple[nn.Module, nn.Module]] = (), feature_weight: float = 0.0):
        self.student, self.teacher, self.t = student, teacher, temperature
        self.feature_weight, self.outputs = feature_weight, {}
        for i, (s, t) in enumerate(taps if feature_weight else ()):
            s.register_forward_hook(lambda m, inp, out, key=("s", i): self.outputs.__setitem__(key, out))
            t.register_forward_hook(lambda m, inp, out, key=("t", i): self.outputs.__setitem__(key, out))
        self.n_taps = len(taps) if feature_weight else 0

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        self.outputs.clear()
        with torch.no_grad():
            target = F.log_softmax(self.teacher(x) / self.t, dim=1)
        out = F.log_softmax(self.student(x) / self.t, dim=1)
        kl = F.kl_div(out, target, log_target=True, reduction="batchmean")
        if not self.n_taps:
            return {"loss": kl}
        features = sum(F.mse_loss(self.outputs["s", i], self.outputs["t", i]) / self.outputs["t", i].square().mean()
                       for i in range(self.n_taps)) / self.n_taps
        return {"loss": kl + self.feature_weight * features, "kl": kl.detach(), "features": features.detach()}


# -- the file: indices bit-packed, codebooks fp16, the rest fp16 -------------------------------------------
def _pack(indices: np.ndarray, bits: int) -> bytes:
    bitplanes = ((indices[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
    return np.packbits(bitplanes.reshape(-1)).tobytes()


def _unpack(data: bytes, n: int, bits: int) -> np.ndarray:
    planes = np.unpackbits(np.frombuffer(data, np.uint8))[:n * bits].reshape(n, bits).astype(np.int64)
    return (planes << np.arange(bits)).sum(1)


def save(model: nn.Module, model_name: str, cfg: PQConfig) -> bytes:
    """The quantized network as one file: safetensors holding, per quantized layer, `<name>.codebook` (fp16)
    and `<name>.indices` (uint8 bytes of log2 k bits per block), every other tensor of the state in fp16,
    and the metadata to rebuild it."""
    from safetensors.torch import save as st_save

    state, meta = {}, {"model": model_name, "config": dataclasses.asdict(cfg), "layers": {}}
    pq = {n.split(".parametrizations.")[0]: m for n, m in model.named_modules() if isinstance(m, PQWeight)}
    bits = max(1, math.ceil(math.log2(cfg.codewords)))
    for name, w in pq.items():
        assign = w.assign.numpy().astype(np.int64)
        state[f"{name}.codebook"] = w.codebook.detach().half()
        state[f"{name}.indices"] = torch.from_numpy(np.frombuffer(_pack(assign, bits), np.uint8).copy())
        meta["layers"][name] = {"shape": list(w.shape), "blocks": len(assign), "bits": bits}
    skip = {f"{n}.parametrizations.weight.original" for n in pq} | {
        k for k in model.state_dict() if ".parametrizations.weight.0." in k}
    for k, v in model.state_dict().items():
        if k in skip:
            continue
        state[k] = v.half() if v.is_floating_point() else v
    return st_save(state, metadata={"neuralcodecs-pq": json.dumps(meta)})


def _metadata(data: bytes) -> dict:
    """save()'s metadata: the model's name, the PQConfig and the quantized layers."""
    n = int.from_bytes(data[:8], "little")  # safetensors: an 8-byte header length, then the JSON header
    return json.loads(json.loads(data[8:8 + n])["__metadata__"]["neuralcodecs-pq"])


def config_of(data: bytes) -> PQConfig:
    cfg = _metadata(data)["config"]
    return PQConfig(**{**cfg, "skip": tuple(cfg["skip"]), "sizes": tuple(tuple(s) for s in cfg["sizes"])})


def load(data: bytes, build: Callable[[str], nn.Module], trainable: bool = False) -> nn.Module:
    """A network from save()'s bytes; build(model_name) gives the bare architecture. `trainable`: the quantized
    weights stay codebook[assignments] parametrizations (PQWeight), so fine-tuning can go on from the file."""
    from safetensors.torch import load as st_load
    from torch.nn.utils import parametrize

    state, meta = st_load(data), _metadata(data)
    model = build(meta["model"])
    full, pq = {}, {}
    for name, info in meta["layers"].items():
        codebook = state.pop(f"{name}.codebook").float()
        idx = torch.from_numpy(_unpack(state.pop(f"{name}.indices").numpy().tobytes(), info["blocks"], info["bits"]))
        full[f"{name}.weight"] = codebook[idx].reshape(info["shape"])
        pq[name] = (codebook, idx, info["shape"])
    full.update({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.load_state_dict(full)
    if trainable:
        for name, (codebook, idx, shape) in pq.items():
            parametrize.register_parametrization(model.get_submodule(name), "weight", PQWeight(codebook, idx, shape),
                                                 unsafe=True)
    return model.eval()


def parameter_bytes_fp32(model: nn.Module) -> int:
    """The uncompressed size as the paper counts it: every parameter (and batch-norm statistic) in fp32."""
    return 4 * sum(v.numel() for k, v in model.state_dict().items() if v.is_floating_point())
