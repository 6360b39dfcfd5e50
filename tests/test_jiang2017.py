"""jiang2017 before training: ComCNN/RecCNN shapes, the host codec's file inside, gradient routing."""
import numpy as np
import pytest
import torch

import neuralcodecs as nc
from neuralcodecs.codecs.jiang2017 import ComCNN, Jiang2017, RecCNN

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Jiang2017.for_training(name="jiang2017")


def test_reccnn_has_twenty_weight_layers():
    convs = [m for m in RecCNN().modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 20


def test_untrained_reccnn_returns_its_input():
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(RecCNN().eval()(x), x)


def test_untrained_comcnn_averages_2x2_blocks():
    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=64, mode="bilinear")
    c = ComCNN().eval()(x)
    half = torch.nn.functional.avg_pool2d(x, 2)
    assert c.shape == half.shape and torch.allclose(c, half, atol=1e-4)  # batch norm's eps


def test_training_routes_gradients_as_the_paper_alternates(model):
    model.train()
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert out["x_hat"].shape == (4, 3, 32, 32) and torch.equal(out["target"], torch.cat([x, x]))
    real, through = out["x_hat"][:2], out["x_hat"][2:]
    model.zero_grad()
    (through - x).pow(2).mean().backward(retain_graph=True)  # identity-codec path: ComCNN only
    assert model.comcnn[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in model.reccnn.parameters())
    model.zero_grad()
    (real - x).pow(2).mean().backward()  # real-codec path: RecCNN only
    assert all(p.grad is None or not p.grad.any() for p in model.comcnn.parameters())
    assert model.reccnn.body[-1].weight.grad.abs().sum() > 0


def test_coding_with_untrained_weights_holds_a_jpeg_of_the_compact_image(model):
    model.eval()
    x = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    chunks = model.encode_chunks(x)
    assert chunks[0][:2] == b"\xff\xd8"
    assert nc.create_codec("jpeg").decode_chunks(chunks, (16, 24, 3)).shape == (16, 24, 3)
    out = model.decode_chunks(chunks, x.shape)
    assert out.shape == x.shape and out.dtype == np.uint8


def test_hosts_are_variants_with_their_own_sweeps():
    from neuralcodecs.registry import get_entry

    assert get_entry("jiang2017-jpeg2000").defaults == {"host": "jpeg2000"}
    assert get_entry("jiang2017-heif").cls.qualities != get_entry("jiang2017").cls.qualities
    with pytest.raises(ValueError):
        Jiang2017.Config(quality=50, host="png")


def test_train_cli_runs(tmp_path):
    from PIL import Image

    from neuralcodecs.cli import main

    (tmp_path / "photos").mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / "photos" / "a.png")
    assert main(["train", "jiang2017-heif", "--data", str(tmp_path / "photos"), "--out", str(tmp_path / "run"),
                 "--steps", "2", "--crop", "32", "--batch", "2", "--threads", "1"]) == 0


def test_enhance_model_trains_on_real_jpegs_and_takes_any_jpeg(tmp_path):
    from neuralcodecs.codecs.jiang2017 import JPEGEnhance

    torch.manual_seed(0)
    m = JPEGEnhance.for_training(name="jiang2017-enhance").train()
    out = m(torch.rand(2, 3, 32, 32))
    assert out["x_hat"].shape == (2, 3, 32, 32)
    m.eval()
    x = (np.random.default_rng(1).random((24, 40, 3)) * 255).astype(np.uint8)
    jpg = nc.create_codec("jpeg", quality=20).encode_native(x)
    assert m.enhance_jpeg(jpg).shape == x.shape
    gray = nc.create_codec("jpeg", quality=20).encode_native(x[:, :, 0])
    assert m.enhance_jpeg(gray).shape == (24, 40, 1)
    # a header whose SOF claims 60000x60000 pixels is refused with a message, not a Pillow exception
    sof = jpg.index(b"\xff\xc0")
    huge = jpg[:sof + 5] + (60000).to_bytes(2, "big") * 2 + jpg[sof + 9:]
    with pytest.raises(ValueError, match="readable JPEG|over the decoder limit"):
        m.enhance_jpeg(huge)
    claim = jpg[:sof + 5] + (2000).to_bytes(2, "big") * 2 + jpg[sof + 9:]  # under Pillow's limit, over ours
    nc.set_max_decode_pixels(1000 * 1000)
    try:
        with pytest.raises(ValueError, match="over the decoder limit"):
            m.enhance_jpeg(claim)
    finally:
        nc.set_max_decode_pixels(None)


def test_tiny_images_respect_the_host_codecs_size_rules():
    from neuralcodecs.codecs.jiang2017 import Jiang2017JPEG2000

    m = Jiang2017JPEG2000.for_training(name="jiang2017-jpeg2000").eval()
    x = np.full((2, 2, 3), 100, np.uint8)  # a 1x1 compact image; OpenJPEG needs 2x2
    assert m.decode_chunks(m.encode_chunks(x), x.shape).shape == (2, 2, 3)


def test_enhance_files_hold_the_image_itself_as_their_jpeg(photo):
    """jiang2017-enhance's file holds a JPEG of the image's own size (what `extract` hands out), not a padded copy."""
    import io

    from PIL import Image

    from neuralcodecs import container

    x = photo[:37, :53]
    data = nc.encode(x, "jiang2017-enhance", quality=30)
    chunk = container.read_chunks(data, container.read_header(data), allow_partial=False)[0]
    assert Image.open(io.BytesIO(chunk)).size == (53, 37)
    assert nc.decode(data).shape == x.shape
