"""Product quantization of a network's weights, as in Stock, Joulin, Gribonval, Graham, Jégou, "And the Bit
Goes Down: Revisiting the Quantization of Neural Networks", ICLR 2020.

    every conv (transposed too) / linear weight (but the first layer, unless sized) -> blocks of d values
                                                                                (d: see `block_size`)
      -> each block replaced by the nearest of k codewords of its layer's codebook, the distance weighted by
         the layer's input activations, so what is minimized is the error of the layer's OUTPUT,
         ||X (W - W_hat)||^2, not of the weights (EM: E-step assigns under that distance, M-step solves for
         each codeword in closed form through the pseudo-inverse)
      -> layer by layer from the input upwards, each layer's activations taken from the already quantized
         network (so later layers correct what earlier ones lost)
      -> codewords fine-tuned by distillation from the uncompressed teacher (no labels), assignments fixed:
         each layer's own right after its EM (`quantize(..., after_layer=)`, so the next layer's activations
         come from a network that has already recovered), then all of them together (`fine_tune`); beyond
         the paper, that fine-tuning can move the assignments too (`reassign_every`: latent weights trained
         straight through, each block re-assigned to the codeword nearest its latent; see PQWeight)
    size = indices (log2 k bits per block) + fp16 codebooks + every other tensor in fp16

Block sizes (the paper's small-block setting; `large` doubles them): a k x k kernel is one block (d = k*k,
depthwise included: one channel's kernel), a 1x1 convolution or a linear layer is cut along its inputs into
blocks of 4 (d = 8 in the large setting; for k x k kernels the large setting pairs two input channels).
A layer with fewer than MIN_BLOCKS_PER_CODEWORD * k blocks would spend more on its codebook than it saves:
it stays in fp16, as the first layer does.

Per block j, reading input group g(j) (the input channels it multiplies), the output error is
(w_j - c)^T H_g (w_j - c) with H_g = X_g^T X_g, the Gram matrix of those inputs over the calibration images.
That sum over blocks leaves out the cross terms between the blocks of one output channel, e_j^T H_jj' e_j',
and on images they are not small: neighbouring rows of a kernel, and neighbouring channels, see correlated
inputs, so errors the EM makes independently add up: on balle2017's layers the EM's codebook leaves many
times the error the per-block sum promises. So after the EM, `refine` re-assigns each block with the
errors of the other blocks of its output channel compensated (the full Gram matrix H of the channel's
input), which cuts that error by more than half. (On EfficientNet-Lite0 it lowered the error on the
calibration images and top-1 on others; the classifier command leaves it off.) Measurements: README, "Why
the constants are what they are".
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..weights import safetensors_metadata

MIN_BLOCKS_PER_CODEWORD = 4
RIDGE = 1e-6  # relative to the Gram matrices' mean diagonal: keeps the M-step's solve well posed
# The refinement compensates errors along the directions the calibration inputs span; where few inputs span
# a direction, compensating there fits those images and not others (EfficientNet-Lite0's classifier layer
# reads 1280 values, and 256 images span at most 256 of them). So it runs only where the layer saw at least
# as many input vectors as it has inputs per output channel, and H is damped by 1 % of its mean diagonal
# (GPTQ's default) so that weakly spanned directions are not compensated much.
REFINE_DAMPING = 0.01


@dataclass
class PQConfig:
    codewords: int = 256   # k
    large: bool = False    # the paper's large-block setting
    em_iterations: int = 20
    skip: tuple[str, ...] = ()  # module names left in fp16 (the first layer is, unless `sizes` names it)
    # (substring of module names, d) pairs: the block size of the layers whose names contain the substring
    # (the first match; for k x k kernels a divisor or multiple of k*k), for the small-block setting (`large`
    # doubles it). A
    # smaller d spends more bits where errors cost most: layers whose error no nonlinearity absorbs
    # (EfficientNet's linear-bottleneck projections feed the residual stream directly: quantizing them
    # costs far more top-1 than quantizing the classifier layer or the head conv; README: "Product quantization of
    # network weights"), a larger one saves where they cost little
    sizes: tuple[tuple[str, int], ...] = ()
    seed: int = 0
    # passes of the assignment refinement that sees the whole input of an output channel (refine()); layers
    # whose output channels read more than `span_limit` values keep the per-block EM alone (their full Gram
    # matrix would cost too much to collect: balle2017's last 9x9 deconvolution, 10,368 values)
    refine_passes: int = 4
    span_limit: int = 5000
    # (substring of module names, k) pairs: layers with a codebook of their own size (log2 k bits per index;
    # more codewords where a layer's error costs most), the first match; the others have `codewords`
    codebook_sizes: tuple[tuple[str, int], ...] = ()

    def size_of(self, name: str) -> int | None:
        return next((d for pattern, d in self.sizes if pattern in name), None)

    def codewords_of(self, name: str) -> int:
        return next((k for pattern, k in self.codebook_sizes if pattern in name), self.codewords)


def block_size(module: nn.Module, large: bool, size: int | None = None) -> int:
    """d for a layer: a whole kernel, or 4 inputs of a 1x1 conv / linear layer; `size` instead, when given
    (for a k x k kernel a divisor of k*k cuts each kernel into rows of taps, a multiple of it groups kernels of
    consecutive input channels); doubled when `large`."""
    kh, kw = module.weight.shape[2:] if module.weight.dim() == 4 else (1, 1)
    if kh * kw > 1 and size is None:
        cin = _in_channels(module)
        return kh * kw * (2 if large and cin % 2 == 0 else 1)
    return (size or 4) * (2 if large else 1)


def _in_channels(module: nn.Module) -> int:
    """Input channels per group that one output channel's weights read."""
    w = module.weight
    return w.shape[0] // module.groups if isinstance(module, nn.ConvTranspose2d) else w.shape[1]


def inputs_per_output(module: nn.Module) -> int:
    """D: the values one output channel's weights multiply (its input channels times the kernel's taps)."""
    return _in_channels(module) * (module.weight[0, 0].numel() if module.weight.dim() == 4 else 1)


def _as_conv_weight(module: nn.Module, w: Tensor) -> Tensor:
    """The weight as (out, in, kh, kw): a transposed convolution stores (in, out, kh, kw) (ungrouped only)."""
    if w.dim() == 2:
        return w[:, :, None, None]
    return w.transpose(0, 1) if isinstance(module, nn.ConvTranspose2d) else w


def blocks_of(w: Tensor, d: int, conv_groups: int = 1) -> tuple[Tensor, Tensor]:
    """(blocks (n, d), the input group each block reads (n,)) for a conv/linear weight as (out, in, kh, kw):
    each output channel's weights, flattened in (in, kh, kw) order, cut into blocks of d. Groups number the
    d-value slices of the layer's input patches so that groups index Gram matrices. For a grouped conv
    (depthwise: one group per channel) a block of output channel o reads the channels of o's group."""
    if w.dim() == 2:
        w = w[:, :, None, None]
    cout, cin, kh, kw = w.shape
    per_out = cin * kh * kw // d
    b = w.reshape(cout, per_out, d)
    first = (torch.arange(cout) // (cout // conv_groups)) * per_out  # the group's first slice
    g = first[:, None] + torch.arange(per_out)[None, :]
    return b.reshape(-1, d), g.reshape(-1)


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
        elif m.weight.shape[2] * m.weight.shape[3] == 1:
            cols = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
            groups = cols.reshape(cols.shape[0], -1, self.d)
        else:
            for xi in x.split(1):  # one image at a time: a 9x9 kernel's patches are 81 values per input value
                p = _patches(m, xi)                                  # (1, cin*kh*kw, L)
                self._add(p[0].reshape(-1, self.d, p.shape[2]).permute(2, 0, 1))
            return
        self._add(groups)

    def _add(self, groups: Tensor) -> None:
        """groups: (positions, G, d)."""
        h = torch.einsum("ngi,ngj->gij", groups, groups)
        self.h = h if self.h is None else self.h + h
        self.count += groups.shape[0]


def _patches(m: nn.Module, x: Tensor) -> Tensor:
    """The input values each weight of a k x k kernel multiplies, for every output position: (N, cin*kh*kw, L)
    in the weight's (in, kh, kw) order. A transposed convolution is a convolution of the input with zeros
    inserted between its samples (stride - 1 of them) by the kernel flipped in both directions: its patches
    are those of that convolution, flipped back."""
    kh, kw = m.weight.shape[2:]
    if isinstance(m, nn.ConvTranspose2d):
        (sh, sw), (ph, pw), (oh, ow) = m.stride, m.padding, m.output_padding
        n, c, h, w = x.shape
        up = x.new_zeros(n, c, (h - 1) * sh + 1, (w - 1) * sw + 1)
        up[:, :, ::sh, ::sw] = x
        up = F.pad(up, (kw - 1 - pw, kw - 1 - pw + ow, kh - 1 - ph, kh - 1 - ph + oh))
        p = F.unfold(up, (kh, kw))
        return p.reshape(n, c, kh * kw, -1).flip(2).reshape(n, c * kh * kw, -1)
    pad = m.padding if isinstance(m.padding, tuple) else (0, 0)
    if hasattr(m, "static_padding"):
        x = m.static_padding(x.float()).double()
    return F.unfold(x, (kh, kw), dilation=m.dilation, padding=pad, stride=m.stride)


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


def diagonal_blocks(gram: Tensor, d: int) -> Tensor:
    """(D/d, d, d): the Gram matrices of each d-value slice of the input, the diagonal blocks of the full one."""
    return torch.stack([gram[b * d:(b + 1) * d, b * d:(b + 1) * d] for b in range(gram.shape[0] // d)])


def refine(codebook: Tensor, assign: Tensor, w: Tensor, gram: Tensor, passes: int) -> Tensor:
    """Assignments (cout * nb,) improved for the true output error sum_o e_o^T H e_o, e_o = w_o - w_hat_o
    (w: (cout, D), each output channel's whole input; H: (D, D), its Gram matrix; blocks of d = codebook's
    width along D). Block by block, every output channel's block b moves to the codeword nearest (under
    H_bb) to its target w_b + H_bb^-1 sum_{b' != b} H_bb' e_b', the value that cancels the errors the other
    blocks make; each such move can only lower the error (coordinate descent), and the codebook stays."""
    cout, D = w.shape
    k, d = codebook.shape
    nb = D // d
    c, h, w = codebook.double(), gram.double(), w.double()
    h = h + REFINE_DAMPING * h.diagonal().mean() * torch.eye(D, dtype=h.dtype)
    a = assign.reshape(cout, nb).clone()
    e = w - c[a].reshape(cout, D)
    diag = diagonal_blocks(h, d)
    inv = torch.linalg.inv(diag)
    for _ in range(passes):
        for b in range(nb):
            sl = slice(b * d, (b + 1) * d)
            cross = e @ h[:, sl] - e[:, sl] @ diag[b]            # sum over the other blocks of e_b' H_b'b
            target = w[:, sl] + cross @ inv[b]
            hc = c @ diag[b]
            a[:, b] = ((hc * c).sum(1)[None, :] - 2 * target @ hc.T).argmin(1)
            e[:, sl] = w[:, sl] - c[a[:, b]]
    return a.reshape(-1)


class PQWeight(nn.Module):
    """A weight held as codebook[assignments], for fine-tuning the codewords (parametrization of .weight);
    `transposed`: the blocks are of the (out, in, kh, kw) view of a transposed convolution's weight.

    With a latent weight (`use_latent()`), fine-tuning moves the assignments too: the forward value stays
    codebook[assignments], the latent blocks receive its gradient unchanged (straight-through), and
    `reassign()` moves every block to the codeword nearest its latent. The latent starts on its codeword, so
    a block changes codeword only where the loss's gradient has pushed it past the midpoint to another one.
    (With the assignments fixed, fine-tuning moves only k * d numbers per layer, and balle2017-pq's loss on
    held-out crops stopped falling; with the latents it fell again, towards the teacher's: README, "Moving the
    assignments".)"""

    def __init__(self, codebook: Tensor, assign: Tensor, shape: torch.Size, transposed: bool = False):
        super().__init__()
        self.codebook = nn.Parameter(codebook)
        self.register_buffer("assign", assign)
        self.shape, self.transposed = tuple(shape), transposed
        self.latent: nn.Parameter | None = None

    def use_latent(self) -> nn.Parameter:
        if self.latent is None:
            self.latent = nn.Parameter(self.codebook.detach()[self.assign].clone())
        return self.latent

    @torch.no_grad()
    def reassign(self) -> int:
        """Each block to the codeword nearest its latent; returns how many changed."""
        c, z = self.codebook, self.latent
        new = (c.square().sum(1)[None, :] - 2 * z @ c.T).argmin(1)
        changed = int((new != self.assign).sum())
        self.assign.copy_(new)
        return changed

    def forward(self, _original: Tensor) -> Tensor:
        w = self.codebook[self.assign]
        if self.latent is not None:
            w = w + (self.latent - self.latent.detach())  # exactly w: (w + z) - z would round
        if self.transposed:
            return w.reshape(self.shape[1], self.shape[0], *self.shape[2:]).transpose(0, 1)
        return w.reshape(self.shape)


def weight_of(module: nn.Module, codebook: Tensor, assign: Tensor) -> PQWeight:
    """The PQWeight of a layer's `weight` (a transposed convolution's in its own layout)."""
    return PQWeight(codebook, assign, module.weight.shape, isinstance(module, nn.ConvTranspose2d))


def quantizable(model: nn.Module, cfg: PQConfig) -> list[tuple[str, nn.Module]]:
    """The conv (transposed too) and linear layers to quantize, in forward order (the order modules are
    registered, which is the order for the networks here), `skip` and the first layer excepted (unless `sizes`
    names it)."""
    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]
    out = []
    for i, (name, m) in enumerate(layers):
        d = block_size(m, cfg.large, cfg.size_of(name))
        n_blocks = m.weight.numel() // d
        if (i == 0 and cfg.size_of(name) is None) or name in cfg.skip or n_blocks < MIN_BLOCKS_PER_CODEWORD * cfg.codewords_of(name):
            continue
        if isinstance(m, nn.ConvTranspose2d) and m.groups != 1:
            continue
        if inputs_per_output(m) % d:
            continue
        out.append((name, m))
    return out


@torch.no_grad()
def quantize(model: nn.Module, calibration: Tensor, cfg: PQConfig, batch: int = 16,
             progress: Callable[[str], None] | None = None,
             after_layer: Callable[[str, nn.Parameter], None] | None = None) -> dict:
    """Product-quantize `model` in place (weights become codebook[assignments] through a parametrization) from
    calibration inputs; returns {name: (codebook, assignments)}. Layer by layer from the input upwards: the
    Gram matrices of each layer come from the network as quantized so far. `after_layer(name, codebook)` runs
    (with gradients enabled, the model back in eval mode after it) once a layer is quantized and before the
    next one's activations are collected: the paper's per-layer fine-tuning of that layer's codewords."""
    from torch.nn.utils import parametrize

    model.eval()
    result = {}
    for name, m in quantizable(model, cfg):
        d = block_size(m, cfg.large, cfg.size_of(name))
        span = inputs_per_output(m)
        full = cfg.refine_passes > 0 and span > d and span <= cfg.span_limit and getattr(m, "groups", 1) == 1
        collect = GramCollector(m, span if full else d)
        hook = m.register_forward_hook(collect)
        for i in range(0, len(calibration), batch):
            model(calibration[i:i + batch])
        hook.remove()
        w = _as_conv_weight(m, m.weight.detach())
        blocks, groups = blocks_of(w, d, getattr(m, "groups", 1))
        gram = collect.h
        if full:  # the per-block Gram matrices are the full one's diagonal blocks
            gram = diagonal_blocks(collect.h[0], d)
        codebook, assign = em(blocks, groups, gram, cfg.codewords_of(name), cfg.em_iterations, cfg.seed)
        if full and collect.count >= span:
            assign = refine(codebook, assign, w.reshape(w.shape[0], span), collect.h[0], cfg.refine_passes)
        parametrize.register_parametrization(m, "weight", weight_of(m, codebook, assign), unsafe=True)
        if progress:
            progress(name)
        if after_layer:
            with torch.enable_grad():
                after_layer(name, m.parametrizations.weight[0].codebook)
            model.eval()
        result[name] = (m.parametrizations.weight[0].codebook.detach(), assign)
    return result


def fine_tune(objective: nn.Module, params: list[nn.Parameter], batches: Callable[[], Tensor], steps: int,
              lr: float, clip: float | None = None, log: Callable[[str], None] | None = None,
              label: str = "fine-tune", reassign_every: int = 0, latent_lr: float | None = None) -> None:
    """`steps` of Adam on `params` alone, every other parameter of `objective` (a module with .loss(), such as
    a codec or a Distillation) frozen meanwhile, the learning rate decayed to 0 on a cosine; `batches()` gives
    each step's input. Through the one train_step. Logs the mean of the last 50 steps' metrics every 100.
    `reassign_every`: the quantized weights of `objective` whose codewords are among `params` get latent
    weights (PQWeight.use_latent, trained at `latent_lr`, default `lr`) and are re-assigned every that many
    steps: the assignments move, not only the codewords."""
    from ..train.step import train_step

    keep = {id(p) for p in params}
    quantized = [m for m in objective.modules() if isinstance(m, PQWeight) and id(m.codebook) in keep]
    latents = [m.use_latent() for m in quantized] if reassign_every else []
    params = [p for p in params if id(p) not in {id(z) for z in latents}]
    keep |= {id(z) for z in latents}
    for p in objective.parameters():
        p.requires_grad_(id(p) in keep)
    groups = [{"params": params, "lr": lr}] + ([{"params": latents, "lr": latent_lr or lr}] if latents else [])
    opt = torch.optim.Adam(groups)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / max(steps, 1))))
    recent: list[dict[str, float]] = []
    moved, start = 0, time.time()
    for step in range(steps):
        metrics = train_step(objective, batches(), opt, clip=clip)
        schedule.step()
        if reassign_every and (step + 1) % reassign_every == 0 and step + 1 < steps:
            moved += sum(m.reassign() for m in quantized)
        if metrics:
            recent = (recent + [metrics])[-50:]
        if log and recent and (step % 100 == 0 or step == steps - 1):
            mean = {k: sum(m[k] for m in recent) / len(recent) for k in recent[-1]}
            log(f"{label} step {step + 1}/{steps} ({time.time() - start:.0f} s): "
                + ", ".join(f"{k} {v:.4f}" for k, v in mean.items())
                + (f", reassigned {moved}" if reassign_every else ""))
            moved = 0


def codeword_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [m.codebook for m in model.modules() if isinstance(m, PQWeight)]


def stored_as_is(key: str) -> bool:
    """Whether save() stores this state entry as it is (fp16): all but a quantized layer's codebook and
    assignments (`.parametrizations.weight.0.`, stored as codewords and packed indices) and the original
    weight its parametrization replaces."""
    return not key.endswith(".parametrizations.weight.original") and ".parametrizations.weight.0." not in key


def stored_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters save() stores as they are: what fine-tuning can move at no cost in bytes."""
    return [p for n, p in model.named_parameters() if stored_as_is(n)]


class Distillation(nn.Module):
    """Fine-tuning objective for train_step: the student's output distribution against the teacher's (KL),
    no labels; only the codewords train (the parametrization averages nothing itself: every block assigned to
    a codeword adds its gradient to that codeword's, and Adam's per-parameter scaling makes the sum act like
    the paper's average).

    `taps`: pairs (student module, teacher module) whose outputs should also agree, e.g. every block of the
    network: their squared error, relative to the teacher output's mean square, averaged over the taps and
    weighted by `feature_weight`, is added. With a thousand calibration images the final output alone is a
    thin signal; matching every block's output gives each codeword a target close to it."""

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float = 1.0,
                 taps: list[tuple[nn.Module, nn.Module]] = (), feature_weight: float = 0.0):
        super().__init__()
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


def index_bits(codewords: int) -> int:
    """Bits of one stored index into a codebook of `codewords` entries."""
    return max(1, math.ceil(math.log2(codewords)))


def packed_indices(weight: "PQWeight") -> Tensor:
    """A PQWeight's assignments as the uint8 tensor of bit-packed indices the files store (index_bits each)."""
    bits = index_bits(len(weight.codebook))
    return torch.from_numpy(np.frombuffer(_pack(weight.assign.numpy().astype(np.int64), bits), np.uint8).copy())


def unpacked_indices(packed: Tensor, blocks: int, codewords: int) -> Tensor:
    """packed_indices' tensor back to the `blocks` assignments into a codebook of `codewords` entries (int64)."""
    return torch.from_numpy(_unpack(packed.numpy().tobytes(), blocks, index_bits(codewords)))


def save(model: nn.Module, model_name: str, cfg: PQConfig) -> bytes:
    """The quantized network as one file: safetensors holding, per quantized layer, `<name>.codebook` (fp16)
    and `<name>.indices` (uint8 bytes of log2 k bits per block), every other tensor of the state in fp16,
    and the metadata to rebuild it."""
    from safetensors.torch import save as st_save

    state, meta = {}, {"model": model_name, "config": dataclasses.asdict(cfg), "layers": {}}
    pq = {n.split(".parametrizations.")[0]: m for n, m in model.named_modules() if isinstance(m, PQWeight)}
    for name, w in pq.items():
        bits = index_bits(len(w.codebook))
        state[f"{name}.codebook"] = w.codebook.detach().half()
        state[f"{name}.indices"] = packed_indices(w)
        meta["layers"][name] = {"shape": list(w.shape), "blocks": len(w.assign), "bits": bits}
    for k, v in model.state_dict().items():
        if stored_as_is(k):
            state[k] = v.half() if v.is_floating_point() else v
    return st_save(state, metadata={"neuralcodecs-pq": json.dumps(meta)})


def _metadata(data: bytes) -> dict:
    """save()'s metadata: the model's name, the PQConfig and the quantized layers."""
    return json.loads(safetensors_metadata(data)["neuralcodecs-pq"])


def config_of(data: bytes) -> PQConfig:
    cfg = _metadata(data)["config"]
    return PQConfig(**{**cfg, "skip": tuple(cfg["skip"]),
                       **{k: tuple(tuple(s) for s in cfg.get(k, ())) for k in ("sizes", "codebook_sizes")}})


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
        idx = unpacked_indices(state.pop(f"{name}.indices"), info["blocks"], len(codebook))
        pq[name] = weight_of(model.get_submodule(name), codebook, idx)
        full[f"{name}.weight"] = pq[name](None).detach()
    full.update({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.load_state_dict(full)
    if trainable:
        for name, weight in pq.items():
            parametrize.register_parametrization(model.get_submodule(name), "weight", weight, unsafe=True)
    return model.eval()


def parameter_bytes_fp32(model: nn.Module) -> int:
    """The uncompressed size as the paper counts it: every parameter (and batch-norm statistic) in fp32."""
    return 4 * sum(v.numel() for k, v in model.state_dict().items() if v.is_floating_point())
