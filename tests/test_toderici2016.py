"""toderici2016 before training: tiles, the residual loop, progressive files with one chunk per iteration."""
import numpy as np
import pytest
import torch

import neuralcodecs as nc
from neuralcodecs import container
from neuralcodecs.image import from_tensor
from neuralcodecs.codecs.toderici2016 import BITS, ITERATIONS, TILE, Toderici2016, _tiles, _untile

torch.set_num_threads(1)


def test_tiles_round_trip():
    x = torch.rand(1, 3, 64, 96)
    t = _tiles(x)
    assert t.shape == (6, 3, TILE, TILE) and torch.equal(t[1], x[0, :, :32, 32:64])
    assert torch.equal(_untile(t, 64, 96), x)


@pytest.mark.parametrize("arch", ["lstm", "fc"])
def test_training_scores_every_iteration(arch):
    torch.manual_seed(0)
    m = Toderici2016.for_training(name="toderici2016", architecture=arch).train()
    x = torch.rand(2, 3, TILE, TILE)
    out = m(x)
    assert out["x_hat"].shape == (2 * ITERATIONS, 3, TILE, TILE) and out["target"].shape == out["x_hat"].shape
    out["x_hat"].mean().backward()
    assert all(p.grad is not None for p in m.coder.parameters() if p.requires_grad)
    m.set_unroll(3)  # a cheaper step: the first 3 iterations, each scored
    assert m(x)["x_hat"].shape == (2 * 3, 3, TILE, TILE)


@pytest.mark.parametrize("arch", ["lstm", "fc"])
def test_chunks_are_iterations_and_any_prefix_decodes(arch):
    torch.manual_seed(0)
    m = Toderici2016.for_training(name="toderici2016", architecture=arch, quality=4).eval()
    x = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    chunks = m.encode_chunks(x)
    assert len(chunks) == 4 and all(len(c) == 6 * BITS // 8 for c in chunks)  # 6 tiles, 0.125 bpp each
    full = m.decode_chunks(chunks, x.shape)
    assert full.shape == x.shape and full.dtype == np.uint8
    # decoding repeats the encoder's own reconstruction at every prefix
    with torch.no_grad():
        codes, recons = m._iterate(_tiles(torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255), 4)
    for k in (1, 2, 4):
        assert np.array_equal(m.decode_chunks(chunks[:k], x.shape), from_tensor(_untile(recons[k - 1], 64, 96)))


def test_progressive_container_truncates():
    torch.manual_seed(0)
    m = Toderici2016.for_training(name="toderici2016", quality=3).eval()
    x = (np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)
    data = m.encode(x)
    full = container.read_header(data)
    cut = container.truncate(full, container.read_chunks(data, full, allow_partial=False), 1)
    assert len(cut) < len(data)
    header = container.read_header(cut)
    chunks = container.read_chunks(cut, header, allow_partial=True)
    assert len(chunks) == 1 and m.decode_file(header, chunks).shape == x.shape


def test_train_cli_runs(tmp_path):
    from PIL import Image

    from neuralcodecs.cli import main

    (tmp_path / "p").mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / "p" / "a.png")
    assert main(["train", "toderici2016", "--data", str(tmp_path / "p"), "--out", str(tmp_path / "run"),
                 "--steps", "2", "--crop", "32", "--batch", "2", "--threads", "1"]) == 0


def test_tiles_coded_in_bounded_batches_give_the_same_file(photo, monkeypatch):
    """Memory is bounded by coding TILE_BATCH tiles at a time; the batches change neither bytes nor pixels."""
    from neuralcodecs.codecs import toderici2016

    codec = nc.create_codec("toderici2016", quality=3)
    whole = codec.encode(photo)
    monkeypatch.setattr(toderici2016, "TILE_BATCH", 5)
    batched = codec.encode(photo)
    assert batched == whole
    assert np.array_equal(nc.decode(batched), nc.decode(whole))
