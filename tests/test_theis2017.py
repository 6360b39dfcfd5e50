"""theis2017 before training: shapes, the incremental mask, the training stages, real coding with a GSM."""
import numpy as np
import pytest
import torch

from neuralcodecs.codecs.theis2017 import MASK_EVERY, MASK_START, MASK_STEP, Theis2017


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Theis2017.for_training(name="theis2017", N=32, M=24)


def test_shapes_and_mirror_padding(model):
    x = torch.rand(2, 3, 48, 40)
    y = model.analysis(x)
    assert y.shape == (2, 24, 6, 5)  # 1/8 resolution: the padded border is cropped away again
    assert model.synthesis(y).shape == x.shape


def test_incremental_mask_opens_channels_over_training(model):
    model.train()
    model.set_stage("transforms")
    model.mask_steps.fill_(0)
    m = model.training_mask(model.log_gain.shape[1], "cpu")
    assert m[:MASK_START].all() and not m[MASK_START:].any() and int(model.mask_steps) == 1
    model.mask_steps.fill_(MASK_EVERY)
    m = model.training_mask(model.log_gain.shape[1], "cpu")
    assert m[:MASK_START + MASK_STEP].all() and not m[MASK_START + MASK_STEP:].any()
    # a training forward counts a step; analysis, and so coding, never masks nor counts, in any mode
    before = int(model.mask_steps)
    model(torch.rand(1, 3, 32, 32))
    assert int(model.mask_steps) == before + 1
    assert (model.analysis(torch.rand(1, 3, 32, 32))[:, MASK_START + MASK_STEP:] != 0).any()
    assert int(model.mask_steps) == before + 1
    model.set_stage("joint")
    assert model.training_mask(model.log_gain.shape[1], "cpu") is None
    model.eval()


def test_stages_train_what_the_paper_trains(model):
    model.train()
    model.set_stage("transforms")
    out = model(torch.rand(4, 3, 32, 32))
    assert (out["lmbda"] == model.lmbdas[-1]).all()  # the transforms train at the highest rate
    assert all(p.requires_grad for p in model.g_a.parameters())
    model.set_stage("scales")
    out = model(torch.rand(6, 3, 32, 32))
    assert len(set(out["lmbda"].tolist())) == len(model.lmbdas)  # every rate point's scales fine-tune
    assert not any(p.requires_grad for p in list(model.g_a.parameters()) + list(model.g_s.parameters()))
    out["bits"].sum().backward()
    assert model.log_gain.grad is not None and model.g_a[0].weight.grad is None
    model.set_stage("joint")  # beyond the paper: everything, at every rate point
    model.zero_grad()
    out = model(torch.rand(6, 3, 32, 32))
    assert len(set(out["lmbda"].tolist())) == len(model.lmbdas)
    out["bits"].sum().backward()
    assert model.log_gain.grad is not None and model.g_a[0].weight.grad is not None
    model.set_stage("transforms")


def test_rounding_passes_the_gradient_through(model):
    model.train()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(x)["x_hat"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_real_coding_round_trip_with_untrained_weights(model):
    model.eval()
    model.update_tables()
    x = (np.random.default_rng(0).random((32, 40, 3)) * 255).astype(np.uint8)
    chunks = model.encode_chunks(x)
    out = model.decode_chunks(chunks, x.shape)
    assert out.shape == x.shape and out.dtype == np.uint8
    assert np.array_equal(out, model.decode_chunks(chunks, x.shape))


def test_train_cli_runs_both_stages(tmp_path):
    from PIL import Image

    from neuralcodecs.cli import main

    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(data / f"{i}.png")
    base = ["train", "theis2017", "--data", str(data), "--out", str(tmp_path / "run"), "--crop", "32", "--batch", "2",
            "--threads", "1"]
    assert main(base + ["--steps", "2"]) == 0
    assert main(base + ["--steps", "4", "--resume", "--stage", "scales"]) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and int(state["model"]["mask_steps"]) == 2  # the mask only counts stage 1


def test_masked_coefficients_cost_no_bits(model):
    model.train()
    model.set_stage("transforms")
    x = torch.rand(2, 3, 32, 32)
    bits = {}
    for steps in (0, 100 * MASK_EVERY):  # 8 channels open / all open; same rate point, same noise
        model.mask_steps.fill_(steps)
        torch.manual_seed(1)
        bits[steps] = model(x)["bits"]
    assert (bits[0] < bits[100 * MASK_EVERY]).all()
