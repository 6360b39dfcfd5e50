import os
import sys
from pathlib import Path

# The golden files' exact bytes and pixels are those of torch's AVX2 kernels (checked on AVX2 machines); torch
# picks other kernels on AVX-512 ones, whose sums differ in the last bits and can flip a rounding of a float
# transform. Before torch is imported, ATen, oneDNN and MKL are held to their AVX2 code paths, so the suite
# computes alike on both kinds of machine (CI runs on either).
for _name, _value in (("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("MKL_CBWR", "AVX2")):
    os.environ.setdefault(_name, _value)

import numpy as np
import pytest

import neuralcodecs as nc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "golden"))  # make_golden: the golden image and the quick settings
# Codecs whose encoder is an optimization (coconet fits a network per image): their contract runs with
# `make test-all`, with make_golden's quick settings (FAST: an iteration cap, not the clock, ends the fit, so
# two encodes agree); tests/test_coconet.py checks them by default with small settings.
SLOW_TO_ENCODE = {"coconet"}


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 96x128 crop of the shipped Kodak sample: natural content, small enough to keep tests fast."""
    return np.ascontiguousarray(nc.load_image(ROOT / "samples" / "kodim23.png")[200:296, 300:428])


@pytest.fixture
def png(tmp_path, photo):
    """The photo as a PNG file in tmp_path."""
    path = tmp_path / "in.png"
    nc.save_image(path, photo)
    return path
