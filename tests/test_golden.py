"""Golden files: every shipped codec's small file, made once, must decode to exactly the pixels stored
beside it, forever after. A change of the container, a coder, a codec's decoding or its shipped weights
that alters one pixel fails here (regenerate with tests/golden/make_golden.py only when meant). When a codec's
files change but the old ones must still decode, its old golden file moves to golden/legacy/ and stays tested;
(named CODEC.ncdc or, where a codec's files changed more than once, CODEC.WHAT-CHANGED.ncdc);
when old files can no longer decode exactly, the old golden file moves to golden/refused/, and must be refused
with a BitstreamError rather than decoded to other pixels."""
from pathlib import Path

import numpy as np
import pytest

import neuralcodecs as nc
from make_golden import FAST, golden_image  # tests/golden (conftest.py puts it on the path)

GOLDEN = Path(__file__).resolve().parent / "golden"
FILES = sorted(GOLDEN.glob("*.ncdc"))
LEGACY = sorted(GOLDEN.glob("legacy/*.ncdc"))


def test_every_ready_codec_has_a_golden_file():
    missing = set(nc.list_codecs(ready=True)) - {f.stem for f in FILES}
    assert not missing, f"no golden file for {sorted(missing)}: run tests/golden/make_golden.py {' '.join(sorted(missing))}"


@pytest.mark.parametrize("path", FILES + LEGACY, ids=[f.stem for f in FILES] + [f"legacy-{f.stem}" for f in LEGACY])
def test_golden_file_decodes_to_its_pixels(path):
    data = path.read_bytes()
    assert nc.info(data)["codec"] == path.stem.split(".")[0]
    expected = nc.load_image(path.with_suffix(".png"))
    decoded = nc.decode(data)
    assert decoded.shape == expected.shape and decoded.dtype == np.uint8
    assert np.array_equal(decoded, expected), f"{path.stem}: {int((decoded != expected).sum())} values differ"


# coconet's encoder trains a network for a fixed number of steps: its float sums, and so its file, differ
# between CPUs (AVX2 and AVX-512 machines alike run this suite); its decoding is checked above like every codec's
ENCODER_VARIES_BY_CPU = {"coconet"}


@pytest.mark.parametrize("path", [f for f in FILES if f.stem not in ENCODER_VARIES_BY_CPU],
                         ids=lambda p: p.stem)
def test_golden_image_encodes_to_the_golden_bytes(path):
    """The encoder side of the same promise: encoding the golden image today writes the golden file byte for
    byte, so a change of what a file stores (its header, settings, chunks) cannot pass silently either."""
    data = nc.create_codec(path.stem, **FAST.get(path.stem, {})).encode(golden_image())
    assert data == path.read_bytes(), (f"{path.stem}: the encoder writes other bytes than the golden file "
                                       f"({len(data)} against {path.stat().st_size}); if meant, move the old file to "
                                       f"golden/legacy/ and regenerate")


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("refused/*.ncdc")), ids=lambda p: p.stem)
def test_files_of_a_retired_coding_are_refused(path):
    with pytest.raises(nc.BitstreamError, match="other weights"):
        nc.decode(path.read_bytes())


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_golden_file_decodes_to_its_pixels_in_several_threads_at_once(path):
    """One cached decoder per codec serves every thread (codec._decoder): nothing a decode changes may live on
    it. Three threads decode the file four times each, at the same time."""
    from concurrent.futures import ThreadPoolExecutor

    data, expected = path.read_bytes(), nc.load_image(path.with_suffix(".png"))
    nc.decode(data)  # the decoder built and cached before the threads share it
    with ThreadPoolExecutor(3) as pool:
        decoded = list(pool.map(lambda _: nc.decode(data), range(12)))
    assert all(np.array_equal(d, expected) for d in decoded)
