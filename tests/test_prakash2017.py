"""prakash2017: a standard JPEG that any decoder reads, quality spent where the map says, sizes on target."""
import io

import numpy as np
import pytest
from PIL import Image

import neuralcodecs as nc
from neuralcodecs.cli import main
from neuralcodecs.codecs.prakash2017 import TOP_K, roi_map


@pytest.fixture(scope="module")
def image():
    return nc.load_image(nc.cli.DEMO_IMAGE)[:192, :256]


def test_native_file_is_a_standard_jpeg_with_the_same_pixels(image):
    codec = nc.create_codec("prakash2017")
    jpg = codec.encode_native(image)
    import imagecodecs

    pil = np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB"))
    assert jpg[:2] == b"\xff\xd8" and pil.shape == image.shape
    assert np.array_equal(pil, imagecodecs.jpeg8_decode(jpg))
    data = codec.encode(image)
    assert nc.extract(data)[0] == jpg  # the file's chunk is that JPEG, so nc.decode gives Pillow's pixels
    assert np.array_equal(nc.decode(data), pil)


def test_size_follows_jpeg_and_target_bytes(image):
    for q in (30, 70):
        jpeg = len(nc.create_codec("jpeg", quality=q).encode_chunks(image)[0])
        ours = len(nc.create_codec("prakash2017", quality=q).encode_native(image))
        assert abs(ours - jpeg) <= 0.01 * jpeg + 30
    assert abs(len(nc.create_codec("prakash2017", target_bytes=6000).encode_native(image)) - 6000) <= 60


def test_a_users_roi_spends_quality_there(image, tmp_path):
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[:, :128] = 255  # the left half matters
    nc.save_image(tmp_path / "roi.png", mask)
    data = nc.create_codec("prakash2017", roi=str(tmp_path / "roi.png")).encode(image)
    # the decoder reads the JPEG alone: the encoder's steering (the ROI's path included) stays out of the file
    assert nc.info(data)["settings"] == {"quality": 50} and str(tmp_path).encode() not in data
    out = nc.decode(data)
    plain = nc.decode(nc.create_codec("jpeg", quality=50).encode(image))
    err = lambda a, b: float(((a.astype(float) - b) ** 2).mean())  # noqa: E731
    assert err(out[:, :128], image[:, :128]) < err(plain[:, :128], image[:, :128])
    assert err(out[:, 128:], image[:, 128:]) > err(plain[:, 128:], image[:, 128:])


def test_map_is_deterministic_and_covers_the_image(image):
    m = roi_map(image, TOP_K, 0.0)
    assert m.shape == image.shape[:2] and m.dtype == np.float32
    assert 0 <= m.min() and m.max() <= 1 and m.max() - m.min() > 0.5
    assert np.array_equal(m, roi_map(image, TOP_K, 0.0))


def test_blend_mode_and_roi_command(image, tmp_path):
    assert nc.decode(nc.create_codec("prakash2017", mode="blend").encode(image)).shape == image.shape
    nc.save_image(tmp_path / "in.png", image)
    assert main(["roi", str(tmp_path / "in.png"), str(tmp_path / "roi.png")]) == 0
    # the map the codec codes by, with its default settings (centre prior included)
    expected = np.round(nc.create_codec("prakash2017").importance(image) * 255).astype(np.uint8)
    assert np.array_equal(nc.load_image(tmp_path / "roi.png"), expected)


def test_sizes_that_are_not_whole_macroblocks(image):
    from neuralcodecs import metrics

    for h, w in ((75, 101), (64, 72), (33, 17)):
        x = np.ascontiguousarray(image[:h, :w])
        ours = nc.decode(nc.create_codec("prakash2017", floor=1.0).encode(x))
        plain = nc.decode(nc.create_codec("jpeg", quality=50).encode(x))
        assert ours.shape == x.shape
        assert metrics.psnr(x, ours) > metrics.psnr(x, plain) - 1.5  # about jpeg's quality, not garbage
