import sys
from pathlib import Path

import numpy as np
import pytest

import neuralcodecs as nc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "golden"))  # make_golden: the golden image and the quick settings


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 96x128 crop of the shipped Kodak sample: natural content, small enough to keep tests fast."""
    return np.ascontiguousarray(nc.load_image(ROOT / "samples" / "kodim23.png")[200:296, 300:428])
