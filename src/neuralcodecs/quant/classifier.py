"""What `neuralcodecs pq` quantizes and measures: an ImageNet classifier, calibration images and top-1 accuracy.

Top-1 is measured the usual way: the shorter side resized to 256 (bicubic), the central 224x224, ImageNet mean
and std. Calibration images (for the Gram matrices and the distillation) come from another folder than the
evaluation one, cropped the same way.
"""
from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..image import image_files
from ..nn.classifier import efficientnet_lite0, normalize, standardize

MODELS = ("efficientnet-lite0",)
# per-layer block sizes of each model (PQConfig.sizes): the projections at d = 2 (see PQConfig), the
# classifier layer (1280 x 1000, a quarter of EfficientNet-Lite0's weights) at d = 8, where it costs little
SIZES = {"efficientnet-lite0": (("_project_conv", 2), ("_fc", 8))}
# the module list whose outputs the distillation also matches (pq.Distillation's taps): the blocks
TAPS = {"efficientnet-lite0": "_blocks"}


def build(name: str, pretrained: bool = True) -> nn.Module:
    """The classifier `name` (MODELS), pretrained (a fresh copy) or only its architecture."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    if pretrained:
        return efficientnet_lite0(fresh=True)
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0").eval()


def _resized(path: str | Path, size: int = 224) -> np.ndarray:
    """The photo with its shorter side at 256 (bicubic), uint8 HxWx3."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = 256 / min(w, h)
        return np.asarray(im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC))


def preprocess(path: str | Path, size: int = 224) -> torch.Tensor:
    im = _resized(path, size)
    h, w = im.shape[:2]
    left, top = (w - size) // 2, (h - size) // 2
    return normalize(im[top:top + size, left:left + size])[0]


def labelled(folder: str | Path) -> list[tuple[Path, int]]:
    """(image, class index) from an ImageNet-labelled folder: its labels.csv (filename, class_index)."""
    folder = Path(folder)
    with open(folder / "labels.csv", newline="") as f:
        return [(folder / row["filename"], int(row["class_index"])) for row in csv.DictReader(f)]


def calibration_files(folders: str | Path | list, n: int, seed: int = 0) -> list[Path]:
    """n image files drawn (seeded) from the images under `folders` (one or several)."""
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    files = [f for folder in folders for f in image_files(folder, recursive=True)]
    if not files:
        raise ValueError(f"no images under {', '.join(map(str, folders))}")
    pick = np.random.default_rng(seed).choice(len(files), size=min(n, len(files)), replace=False)
    return [files[i] for i in sorted(pick)]


def random_views(images: list[torch.Tensor], n: int, gen: torch.Generator, size: int = 224) -> torch.Tensor:
    """n normalized views for distillation: each a random crop of 25-100 % of a photo's area (aspect 3/4 to
    4/3) resized to size x size, flipped half the time, then mixed with the next view of the batch (mixup,
    weight uniform in [0, 1]). With a thousand photos, distilling on their centre crops alone fits those
    crops: more steps lower the KL on them and top-1 on the sample; views like these give the teacher a new
    input at every step, but ended no better (within the sample's standard error): not the default
    (README: "Why the constants are what they are").
    images: uint8 3xHxW tensors (shorter side 256)."""
    views = []
    for i in torch.randint(len(images), (n,), generator=gen).tolist():
        im = images[i]
        h, w = im.shape[1:]
        area = float(torch.empty(()).uniform_(0.25, 1.0, generator=gen)) * h * w
        aspect = math.exp(float(torch.empty(()).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)))
        ch, cw = min(h, round(math.sqrt(area / aspect))), min(w, round(math.sqrt(area * aspect)))
        top = int(torch.randint(h - ch + 1, (1,), generator=gen))
        left = int(torch.randint(w - cw + 1, (1,), generator=gen))
        v = F.interpolate(im[None, :, top:top + ch, left:left + cw].float(), size=(size, size), mode="bilinear",
                          antialias=True, align_corners=False)
        views.append(v.flip(3) if torch.rand((), generator=gen) < 0.5 else v)
    x = torch.cat(views) / 255
    mix = torch.rand((n, 1, 1, 1), generator=gen)
    return standardize(mix * x + (1 - mix) * x.roll(1, 0))


@torch.no_grad()
def reestimate_batch_norm(model: nn.Module, x: torch.Tensor, batch: int = 32) -> None:
    """Batch-norm statistics measured again on x (averaged over all of it): quantized weights shift every
    activation's mean and variance, and statistics that match them win back accuracy for free (the batch-norm
    tensors are stored as they are; README: "Why the constants are what they are")."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    model.eval()  # the network as evaluated (EfficientNet's training mode also drops residual branches at random)
    for m in norms:
        m.train()
    for i in range(0, len(x), batch):
        model(x[i:i + batch])
    model.eval()


@torch.no_grad()
def top1(model: nn.Module, items: list[tuple[Path, int]], batch: int = 32, progress=None) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        x = torch.stack([preprocess(p) for p, _ in chunk])
        correct += int((model(x).argmax(1) == torch.tensor([c for _, c in chunk])).sum())
        if progress:
            progress(len(chunk))
    return correct / len(items)


def quantize_classifier(name: str, calibration_dirs: str | Path | list, cfg, images: int = 256,
                        finetune_images: int = 2048, finetune_steps: int = 200, batch: int = 16, lr: float = 1e-4,
                        feature_weight: float = 0.0, start: bytes | None = None, layer_steps: int = 0,
                        tune: str = "norms", augment: bool = False, reassign_every: int = 0,
                        latent_lr: float | None = None, log=print) -> bytes:
    """Product-quantize classifier `name` and return the compressed file's bytes:

        EM layer by layer on the activations of `images` calibration images
        -> batch-norm statistics re-estimated on `finetune_images` images
        -> codewords and batch-norm scales/shifts fine-tuned by distillation from the uncompressed teacher
           (through the one train_step; no labels), `finetune_steps` steps of `batch` of those images'
           centre crops, the statistics fixed, the learning rate decayed to 0 on a cosine; the outputs of
           the blocks (TAPS) matched too when `feature_weight` > 0
    `start`: a file this wrote; its codewords, assignments and batch norms are fine-tuned further (no EM, no
    re-estimation), with its config. `layer_steps`: each layer's codewords are first fine-tuned alone for that
    many steps right after its EM, before the next layer is quantized (the paper's per-layer step).
    `tune`: what the global fine-tuning moves beside the codewords: "norms", the batch-norm scales and shifts;
    "stored", every parameter the file stores as it is (batch norms, biases, the layers left in fp16: the
    stem and the small depthwise convolutions), which costs no byte more (and gained nothing measurable).
    `augment`: the distillation sees random_views() of the photos instead of their centre crops.
    `reassign_every`: the global fine-tuning moves the assignments too (latent weights at `latent_lr`;
    pq.fine_tune).
    The statistics stay fixed after the re-estimation: the fine-tuned scales adapt to them, and a second
    re-estimation after the fine-tuning undoes its gain. (Measurements: README, "Why the constants are what
    they are".)
    """
    from . import pq

    teacher = build(name)
    if start is not None:
        cfg = pq.config_of(start)
    elif not cfg.sizes:
        cfg = dataclasses.replace(cfg, sizes=SIZES.get(name, ()))
    files = calibration_files(calibration_dirs, max(images, finetune_images), cfg.seed)
    x = torch.stack([preprocess(f) for f in files])
    log(f"calibration: {len(x)} images from {calibration_dirs}")
    gen = torch.Generator().manual_seed(cfg.seed)

    photos = [torch.from_numpy(_resized(f).copy()).permute(2, 0, 1).contiguous() for f in files] if augment else None

    def batches() -> torch.Tensor:
        if augment:
            return random_views(photos, batch, gen)
        return x[torch.randint(len(x), (batch,), generator=gen)]

    student = pq.load(start, lambda n: build(n, pretrained=False), trainable=True) if start is not None else build(name)
    taps = list(zip(getattr(student, TAPS[name]), getattr(teacher, TAPS[name]))) if name in TAPS else []
    objective = pq.Distillation(student, teacher, taps=taps, feature_weight=feature_weight)
    if start is not None:
        log(f"fine-tuning on from a file of {len(start)} bytes")
    else:
        layers = pq.quantizable(student, cfg)
        done = []
        em_images = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))[:images]

        def after_layer(layer: str, codebook: nn.Parameter) -> None:
            pq.fine_tune(objective, [codebook], batches, layer_steps, lr, log=log, label=f"{layer} codewords")

        pq.quantize(student, x[em_images], cfg, after_layer=after_layer if layer_steps else None,
                    progress=lambda n: (done.append(n), log(f"quantized {len(done)}/{len(layers)} {n}")))
        reestimate_batch_norm(student, x)
    if tune == "norms":
        extra = [p for m in student.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters()]
    elif tune == "stored":
        extra = pq.stored_parameters(student)
    else:
        raise ValueError(f"tune: 'norms' or 'stored', not {tune!r}")
    student.eval()  # batch norm keeps its (re-estimated) statistics while the codewords and its scales move
    pq.fine_tune(objective, pq.codeword_parameters(student) + extra, batches, finetune_steps, lr, log=log,
                 reassign_every=reassign_every, latent_lr=latent_lr)
    return pq.save(student, name, cfg)
