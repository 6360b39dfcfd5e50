"""The codec contract, checked over every registered codec (DESIGN.md)."""
import numpy as np
import pytest

import neuralcodecs as nc
from neuralcodecs.metrics import mse
from neuralcodecs.registry import get_entry
from conftest import SLOW_TO_ENCODE
from make_golden import FAST  # tests/golden (conftest.py puts it on the path)

# Learned codecs are registered before their first weights ship; the contract is checked on the ones that
# can code, and the codecs waiting for weights are named here so that none can drop out unnoticed.
WAITING_FOR_WEIGHTS = {"jiang2017-jpeg2000", "jiang2017-heif"}
READY = nc.list_codecs(ready=True)


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TO_ENCODE else n for n in names]


CODECS = _params(READY)


def _create(name, **settings):
    return nc.create_codec(name, **{**FAST.get(name, {}), **settings})


def _cls(name):
    return get_entry(name).cls


def test_only_the_named_codecs_wait_for_weights():
    assert set(nc.list_codecs()) - set(nc.list_codecs(ready=True)) == WAITING_FOR_WEIGHTS
    with pytest.raises(ValueError, match="no trained weights"):
        nc.create_codec("jiang2017-heif")


def test_registry_lists_the_foundation_codecs():
    for name in ["jpeg", "jpeg444", "jpeg2000", "webp", "avif", "heif", "jpegxl", "png", "fmm", "fmm-entropy"]:
        assert name in CODECS
    with pytest.raises(KeyError):
        nc.create_codec("no-such-codec")


@pytest.mark.parametrize("name", CODECS)
def test_round_trip_keeps_shape_and_dtype(name, photo):
    data = _create(name).encode(photo)
    assert isinstance(data, bytes)
    out = nc.decode(data)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert mse(photo, out) < 200  # a real reconstruction, not noise (PSNR > 25 dB at the default quality)


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("shape", [(45, 67, 3), (1, 1, 3), (45, 67)])
def test_odd_sizes_and_gray(name, shape):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    codec = _create(name)
    out = nc.decode(codec.encode(x))
    assert out.shape == x.shape and out.dtype == np.uint8


@pytest.mark.parametrize("name", CODECS)
def test_rgba_is_coded_or_refused_clearly(name):
    x = np.random.default_rng(2).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    codec = _create(name)
    if 4 in type(codec).channels:
        assert nc.decode(codec.encode(x)).shape == x.shape
    else:
        with pytest.raises(ValueError, match="alpha"):
            codec.encode(x)


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 2), np.uint8),
                                 np.zeros((0, 8, 3), np.uint8), [[1, 2], [3, 4]]])
def test_invalid_images_are_refused(bad):
    with pytest.raises((ValueError, TypeError)):
        nc.create_codec("jpeg").encode(bad)


@pytest.mark.parametrize("name", CODECS)
def test_same_input_same_bytes(name, photo):
    assert _create(name).encode(photo) == _create(name).encode(photo)


@pytest.mark.parametrize("name", _params([n for n in READY if len(_cls(n).qualities) >= 2]))
def test_higher_quality_more_bytes_less_distortion(name, photo):
    qualities = _cls(name).qualities
    sizes, errors = [], []
    for q in (qualities[0], qualities[len(qualities) // 2], qualities[-1]):
        data = _create(name, quality=q).encode(photo)
        sizes.append(len(data))
        errors.append(mse(photo, nc.decode(data)))
    assert sizes[0] < sizes[1] < sizes[2]
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("name", CODECS)
def test_corrupted_and_truncated_bytes_raise(name, photo):
    data = _create(name).encode(photo)
    for cut in (0, 3, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(nc.BitstreamError):
            nc.decode(data[:cut])
    rng = np.random.default_rng(0)
    for pos in rng.integers(0, len(data), 20):
        broken = bytearray(data)
        broken[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(nc.BitstreamError):
            nc.decode(bytes(broken))
    with pytest.raises(nc.BitstreamError):
        nc.decode(data + b"\0")


@pytest.mark.parametrize("name", CODECS)
def test_settings_travel_in_the_file(name, photo):
    codec = _create(name, quality=_cls(name).qualities[0])
    info = nc.info(codec.encode(photo))
    assert info["codec"] == name and info["settings"] == codec.settings


@pytest.mark.parametrize("name", CODECS)
def test_a_numpy_quality_is_the_number_it_holds(name, photo):
    # qualities from np.arange or an array of rate points: the same file as the Python number
    q = _cls(name).qualities[0]
    as_numpy = np.int64(q) if isinstance(q, int) else np.float64(q)
    assert _create(name, quality=as_numpy).encode(photo) == _create(name, quality=q).encode(photo)


@pytest.mark.parametrize("name", [n for n in READY if getattr(_cls(n), "progressive", False)])
def test_every_prefix_of_a_progressive_file_decodes_better_than_the_last(name, photo):
    """Toderici et al.'s promise: each step's chunk refines the image, so k steps beat k - 1."""
    data = _create(name).encode(photo)
    steps = len(nc.info(data)["chunks"])
    sizes, errors = [], []
    for k in range(1, steps + 1):
        part = nc.truncate(data, steps=k)
        sizes.append(len(part))
        errors.append(mse(photo, nc.decode(part)))
    assert steps >= 2 and sizes == sorted(set(sizes))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors


def test_non_progressive_files_cannot_be_truncated(photo):
    with pytest.raises(nc.BitstreamError, match="not progressive"):
        nc.truncate(nc.create_codec("jpeg").encode(photo), steps=1)


def test_variants_fix_their_settings():
    assert nc.create_codec("jpeg444").config.subsampling == "444"
    with pytest.raises(ValueError):
        nc.create_codec("jpeg444", subsampling="420")
    with pytest.raises(ValueError):
        nc.create_codec("jpeg", quality=0)


def test_png_is_lossless_with_alpha():
    x = np.random.default_rng(2).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    assert np.array_equal(nc.decode(nc.create_codec("png").encode(x)), x)


def test_native_files_are_standard(photo):
    import imagecodecs

    jpg = nc.create_codec("jpeg", quality=50).encode_native(photo)
    assert jpg[:2] == b"\xff\xd8"
    assert np.array_equal(imagecodecs.jpeg8_decode(jpg), nc.decode(nc.create_codec("jpeg", quality=50).encode(photo)))


def test_fmm_values_are_multiples_of_five(photo):
    out = nc.decode(nc.create_codec("fmm").encode(photo))
    assert (out % 5 == 0).all()
    assert np.abs(out.astype(int) - photo).max() <= 2
    edge = np.full((8, 8, 3), 254, np.uint8)  # rounds to 255 = 51 * 5, no clipping needed
    assert (nc.decode(nc.create_codec("fmm").encode(edge)) == 255).all()


def test_fmm_is_six_bits_and_entropy_variant_is_lossless_on_top(photo):
    h, w = photo.shape[:2]
    plain = nc.create_codec("fmm").encode(photo)
    packed = nc.info(plain)["chunks"][0]
    assert packed == h * w * 3 * 6 // 8
    small = nc.create_codec("fmm-entropy").encode(photo)
    assert len(small) < len(plain)
    assert np.array_equal(nc.decode(small), nc.decode(plain))


@pytest.mark.parametrize("name", [n for n in nc.list_codecs(ready=True) if nc.create_codec(n).native_ext])
def test_native_file_is_the_chunk_encode_writes(name, photo):
    """Every codec with a standard file inside (native_ext) writes it with encode_native, gray images too."""
    from neuralcodecs import container

    codec = _create(name)
    for x in (photo[:37, :53], photo[:37, :53, 0]):
        data = codec.encode(x)
        chunk = container.read_chunks(data, container.read_header(data), allow_partial=False)[0]
        assert codec.encode_native(x) == chunk


@pytest.mark.parametrize("name, setting, bad", [("webp", "method", 7), ("avif", "speed", "x"),
                                                ("jpegxl", "effort", 0), ("heif", "chroma", "422")])
def test_effort_settings_stay_out_of_files_and_are_checked(name, setting, bad, photo):
    """How hard a classical encoder works is not stored in its files (only the encoder reads it) and is checked."""
    data = _create(name).encode(photo)
    assert setting not in nc.info(data)["settings"]
    with pytest.raises(ValueError, match=setting):
        nc.create_codec(name, **{setting: bad})


@pytest.mark.parametrize("name, setting, bad", [("coconet", "bits", 10.5), ("coconet", "batch", 4096.0),
                                                ("coconet", "iterations", True), ("prakash2017", "floor", True),
                                                ("prakash2017", "target_bytes", True), ("prakash2017", "top_k", True),
                                                ("balle2017", "refine", True), ("minnen2018", "refine", 2.5)])
def test_numeric_settings_refuse_bools_and_wrong_kinds(name, setting, bad):
    """A setting of the wrong kind is refused where it is made (check_number), not deep inside encoding."""
    with pytest.raises(ValueError, match=setting):
        nc.create_codec(name, **{setting: bad})
