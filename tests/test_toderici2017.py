"""toderici2017 before training: framings, progressive chunks, the two-pass context coder."""
import numpy as np
import pytest
import torch

from neuralcodecs.codecs.toderici2017 import BITS, ITERATIONS, ContextModel, Toderici2017
from neuralcodecs.image import from_tensor, to_tensor

torch.set_num_threads(1)


def _model(**settings):
    torch.manual_seed(0)
    return Toderici2017.for_training(name="toderici2017", **settings)


@pytest.mark.parametrize("framing", ["oneshot", "additive", "residual-scaling"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_forward(framing, cell):
    m = _model(framing=framing, cell=cell).train()
    x = torch.rand(1, 3, 32, 48)
    out = m(x)
    assert out["x_hat"].shape == (ITERATIONS, 3, 32, 48) and out["bits"].shape == (ITERATIONS,)
    (out["x_hat"].pow(2).mean() + out["bits"].mean()).backward()
    assert m.context.net[0].conv.weight.grad is not None and m.encoder.conv.weight.grad is not None


def test_unrolling_fewer_iterations_scores_only_those():
    m = _model().train()
    m.set_unroll(4)
    x = torch.rand(2, 3, 32, 32)
    out = m(x)
    assert out["x_hat"].shape == (4 * 2, 3, 32, 32) and out["bits"].shape == (4 * 2,)
    assert torch.equal(out["target"], x.repeat(4, 1, 1, 1))
    with pytest.raises(ValueError, match="unrolls 1 to 16"):
        m.set_unroll(ITERATIONS + 1)


def test_progressive_decoding_matches_the_encoder_at_every_prefix():
    m = _model(quality=3).eval()
    x = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    chunks = m.encode_chunks(x)
    assert len(chunks) == 3
    with torch.no_grad():
        _, recons = m._encode_iterations(to_tensor(x), 3)
    for k in (1, 2, 3):
        assert np.array_equal(m.decode_chunks(chunks[:k], x.shape), from_tensor(recons[k - 1]))


def test_coded_size_matches_the_context_models_information():
    m = _model(quality=4).eval()
    x = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    real = 8 * sum(len(c) for c in m.encode_chunks(x))
    estimate = m.estimate_bits(x)
    # the estimate is the information under the very probabilities coded with: the coder adds at most a few
    # 32-bit words per chunk
    assert estimate <= real <= estimate * 1.002 + 64 * 4


def test_anchors_are_a_checkerboard():
    from neuralcodecs.entropy.latent import checkerboard

    a = checkerboard(3, 4)[0, 0]
    assert a.tolist() == [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]]
    assert BITS == 32


def test_train_cli_runs(tmp_path):
    from PIL import Image

    from neuralcodecs.cli import main

    (tmp_path / "p").mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / "p" / "a.png")
    assert main(["train", "toderici2017", "--data", str(tmp_path / "p"), "--out", str(tmp_path / "run"),
                 "--steps", "2", "--crop", "32", "--batch", "2", "--threads", "1"]) == 0


def test_probability_table_is_pinned():
    """The logit -> 12-bit probability table every decoder codes with: the same bytes on every machine."""
    import hashlib

    from neuralcodecs.codecs import toderici2017

    table = toderici2017.probability_table().astype("<i2").tobytes()
    assert hashlib.sha256(table).hexdigest()[:16] == "6b60121a455f2fe1"


def test_large_images_are_coded_tile_by_tile(monkeypatch):
    """With tiles smaller than the image, every tile decodes as the encoder reconstructed it on its own, at
    every prefix of the file, and the context model's integer logits are the same as its training ones, but
    for an occasional rounding step."""
    from neuralcodecs.codecs import toderici2017

    monkeypatch.setattr(toderici2017, "TILE_SIDE", 32)
    m = _model(quality=2).eval()
    x = (np.random.default_rng(2).random((48, 80, 3)) * 255).astype(np.uint8)  # tiles 32x32 ... 16x16
    chunks = m.encode_chunks(x)
    assert len(chunks) == 2
    for k in (1, 2):
        decoded = m.decode_chunks(chunks[:k], x.shape)
        for rows, cols in toderici2017._tiles(48, 80):
            with torch.no_grad():
                _, recons = m._encode_iterations(to_tensor(np.ascontiguousarray(x[rows, cols])), k)
            assert np.array_equal(decoded[rows, cols], from_tensor(recons[-1]))
    b = torch.sign(torch.randn(1, 32, 3, 5))
    with torch.no_grad():
        real = m.context.logits(b, b, True)
    exact = m.context.exact_logits(b, b, True).double() / 2 ** 8
    assert (exact - real.double()).abs().max() <= 2 ** -8 + 1e-6
