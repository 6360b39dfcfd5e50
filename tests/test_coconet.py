"""coconet: fitting, the weights as the file, determinism, upsampling, damaged files (small settings)."""
import numpy as np
import pytest
import torch

import neuralcodecs as nc
from neuralcodecs import container
from neuralcodecs.codecs.coconet import PRESETS, pixel_centres, quantize, upsample
from neuralcodecs.metrics import psnr

FAST = dict(iterations=150, quality=2, compile=False)
torch.set_num_threads(1)  # tiny networks: one thread is fastest, and immune to a busy machine


@pytest.fixture(scope="module")
def image():
    yy, xx = np.mgrid[0:24, 0:40]
    return np.stack([xx * 6, yy * 10, (xx + yy) * 4], axis=2).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def coded(image):
    return nc.create_codec("coconet", **FAST).encode(image)


def test_the_file_is_the_weights_entropy_coded(coded, image):
    # how the network was fitted (iterations, budget, lr, batch, compile, seed) is not needed to read it
    assert nc.info(coded)["settings"] == {"quality": FAST["quality"], "activation": "sine", "bits": 10}
    width, depth, _ = PRESETS[FAST["quality"] - 1]
    weights = 2 * width + width + (depth - 1) * (width * width + width) + 3 * width + 3
    # 10-bit integers, range coded: well under 10 bits a weight, plus a step and histogram per tensor
    assert 6 * weights < 8 * nc.info(coded)["chunks"][0] < 10 * weights + 8 * 40 * (depth + 1)
    assert nc.decode(coded).shape == image.shape


def test_quantized_weights_decode_to_what_the_encoder_fitted(image):
    codec = nc.create_codec("coconet", **FAST)
    net, steps = codec.fit(image, progress=False)
    decoded = codec._load(codec.encode_chunks(image)[0])
    for p, s, q in zip(net.parameters(), steps, decoded.parameters()):
        assert torch.equal(q, quantize(p, s, codec.levels) * s)
        # every weight within half a step of its grid point (weights beyond the grid clip to its ends)
        assert (q - p.clamp(-codec.levels * s, codec.levels * s)).abs().max() <= s / 2 * 1.001


def test_fitting_learns_the_image(coded, image):
    flat = np.full_like(image, 128)
    assert psnr(image, nc.decode(coded)) > psnr(image, flat) + 5


def test_same_image_same_file_and_same_pixels(coded, image):
    assert nc.create_codec("coconet", **FAST).encode(image) == coded
    one = nc.decode(coded)
    torch.set_num_threads(2)
    try:
        assert np.array_equal(one, nc.decode(coded))  # decoding does not depend on the thread count
    finally:
        torch.set_num_threads(1)


def test_relu_variant_and_gray(image):
    out = nc.decode(nc.create_codec("coconet", activation="relu", iterations=20, quality=1, compile=False).encode(image[:, :, 0]))
    assert out.shape == image.shape[:2]


def test_upsampling_queries_a_finer_grid(coded, image):
    big = upsample(coded, 2)
    assert big.shape == (48, 80, 3)
    with pytest.raises(nc.BitstreamError, match="only coconet"):
        upsample(nc.create_codec("jpeg").encode(image), 2)
    assert abs(int(big[::2, ::2].astype(int).mean()) - int(nc.decode(coded).astype(int).mean())) < 3


def test_upsampling_checks_the_file_as_decoding_does(coded):
    from neuralcodecs import container
    from neuralcodecs.codec import open_file
    from neuralcodecs.image import set_max_decode_pixels

    header, _, chunks = open_file(coded)
    set_max_decode_pixels(24 * 40 * 4)
    try:
        assert upsample(coded, 2).shape == (48, 80, 3)
        with pytest.raises(nc.BitstreamError, match="over the decoder limit"):  # refused before rendering
            upsample(coded, 2.1)
    finally:
        set_max_decode_pixels(None)
    # a well-formed file with no chunk, or with a damaged network, is a bad file, not a crash
    for bad in ([], [chunks[0][:3]]):
        data = container.pack(header.name, header.settings, header.fingerprint, (24, 40, 3), bad)
        with pytest.raises(nc.BitstreamError):
            upsample(data, 2)


def test_files_of_another_network_table_are_refused(coded, monkeypatch):
    import neuralcodecs.codecs.coconet as coconet

    decoded = nc.decode(coded)
    monkeypatch.setattr(coconet, "PRESETS", PRESETS[:1] + ((13, 3, 1e-3),) + PRESETS[2:])
    with pytest.raises(nc.BitstreamError, match="other weights"):
        nc.decode(coded)
    # another learning rate fits differently but reads the same file
    monkeypatch.setattr(coconet, "PRESETS", tuple((w, d, lr / 2) for w, d, lr in PRESETS))
    assert np.array_equal(nc.decode(coded), decoded)


def test_damaged_files_raise(coded):
    for bad in (coded[:-3], coded[:20]):
        with pytest.raises(nc.BitstreamError):
            nc.decode(bad)


def test_pixel_centres_span_the_square():
    c = pixel_centres(2, 4)
    assert c[0].tolist() == [-0.75, -0.5] and c[-1].tolist() == [0.75, 0.5]


def test_cli_budget_and_upsample(image, tmp_path):
    from neuralcodecs.cli import main

    nc.save_image(tmp_path / "in.png", image)
    assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.ncdc"), "--codec", "coconet", "--quality", "1",
                 "--set", "iterations=30", "--set", "compile=false", "--set", "budget=60"]) == 0
    # the settings reached the encoder (files leave them out; fitting is deterministic)
    same = nc.create_codec("coconet", quality=1, iterations=30, compile=False, budget=60).encode(image)
    assert (tmp_path / "x.ncdc").read_bytes() == same
    assert main(["upsample", str(tmp_path / "x.ncdc"), str(tmp_path / "big.png"), "--scale", "3"]) == 0
    assert nc.load_image(tmp_path / "big.png").shape == (72, 120, 3)
    assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "y.ncdc"), "--codec", "coconet",
                 "--set", "nonsense"]) == 1


def test_a_fit_that_blows_up_rolls_back(image, coded, monkeypatch):
    # Corrupt the weights once mid-fit, as a diverging Adam step does; the fit must recover from its snapshot.
    step, calls = torch.optim.Adam.step, []

    def corrupting_step(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 450:  # after the snapshot of step 400
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.mul_(40)
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", corrupting_step)
    out = nc.decode(nc.create_codec("coconet", **{**FAST, "iterations": 600}).encode(image))
    assert psnr(image, out) > psnr(image, nc.decode(coded)) - 1


def test_rendering_in_batches_gives_the_pixels_of_one_pass(monkeypatch):
    """The decoder renders RENDER_BATCH pixels at a time straight into the 8-bit image: the same pixels as the
    network over every pixel centre at once."""
    from neuralcodecs.codecs import coconet
    from neuralcodecs.image import from_tensor

    x = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    codec = nc.create_codec("coconet", quality=1, iterations=30, compile=False)
    data = codec.encode(x)
    monkeypatch.setattr(coconet, "RENDER_BATCH", 7)
    decoded = nc.decode(data)
    net = codec._load(container.read_chunks(data, container.read_header(data), allow_partial=False)[0])
    with torch.no_grad():
        whole = from_tensor(net(coconet.pixel_centres(20, 30)).view(20, 30, 3).permute(2, 0, 1)[None])
    assert np.array_equal(decoded, whole)
