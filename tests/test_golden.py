"""Golden files: every shipped codec's small file, made once, must decode to exactly the pixels stored
beside it, forever after. A change of the container, a coder, a codec's decoding or its shipped weights
that alters one pixel fails here (regenerate with tests/golden/make_golden.py only when meant). When a codec's
files change but the old ones must still decode, its old golden file moves to golden/legacy/ and stays tested;
when old files can no longer decode exactly, the old golden file moves to golden/refused/, and must be refused
with a BitstreamError rather than decoded to other pixels."""
from pathlib import Path

import numpy as np
import pytest

import neuralcodecs as nc

GOLDEN = Path(__file__).resolve().parent / "golden"
FILES = sorted(GOLDEN.glob("*.ncdc"))
LEGACY = sorted(GOLDEN.glob("legacy/*.ncdc"))


def test_every_ready_codec_has_a_golden_file():
    missing = set(nc.list_codecs(ready=True)) - {f.stem for f in FILES}
    assert not missing, f"no golden file for {sorted(missing)}: run tests/golden/make_golden.py {' '.join(sorted(missing))}"


@pytest.mark.parametrize("path", FILES + LEGACY, ids=[f.stem for f in FILES] + [f"legacy-{f.stem}" for f in LEGACY])
def test_golden_file_decodes_to_its_pixels(path):
    data = path.read_bytes()
    assert nc.info(data)["codec"] == path.stem
    expected = nc.load_image(path.with_suffix(".png"))
    decoded = nc.decode(data)
    assert decoded.shape == expected.shape and decoded.dtype == np.uint8
    assert np.array_equal(decoded, expected), f"{path.stem}: {int((decoded != expected).sum())} values differ"


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("refused/*.ncdc")), ids=lambda p: p.stem)
def test_files_of_a_retired_coding_are_refused(path):
    with pytest.raises(nc.BitstreamError, match="other weights"):
        nc.decode(path.read_bytes())
