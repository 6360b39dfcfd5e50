"""Learned codecs: the one training loop, export and loading, fingerprints, and the bits of real files."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import neuralcodecs as nc
from neuralcodecs import codec as codec_module
from neuralcodecs import weights
from neuralcodecs.cli import main
from neuralcodecs.learned import LearnedCodec, entropy_coded_codecs
from neuralcodecs.registry import get_entry

ROOT = Path(__file__).resolve().parents[1]
LEARNED = [n for n in nc.list_codecs(ready=True) if issubclass(get_entry(n).cls, LearnedCodec)]
# those that code with entropy models of their own (jiang2017's rate is its host codec's file)
ENTROPY_CODED = entropy_coded_codecs()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Three small smooth photos-to-be (gradients plus noise), written as PNG."""
    d = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:40]
    for i in range(3):
        base = np.stack([xx * (2 + i), yy * 3, (xx + yy) * 2], axis=2)
        img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i}.png")
    return d


def _train(data, out, steps, *extra):
    argv = ["train", "balle2017", "--data", str(data), "--out", str(out), "--steps", str(steps),
            "--crop", "32", "--batch", "2", "--threads", "1", *extra]
    assert main(argv) == 0
    return torch.load(out / "checkpoint.pt", weights_only=False)


def test_train_cli_runs_and_resumes_exactly(tiny_data, tmp_path):
    straight = _train(tiny_data, tmp_path / "a", 20)
    assert straight["step"] == 20
    _train(tiny_data, tmp_path / "b", 10)
    resumed = _train(tiny_data, tmp_path / "b", 20, "--resume")
    assert resumed["step"] == 20
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    # an existing run is never silently restarted, nor resumed with another objective
    assert main(["train", "balle2017", "--data", str(tiny_data), "--out", str(tmp_path / "a"), "--steps", "5"]) == 1
    assert main(["train", "balle2017", "--data", str(tiny_data), "--out", str(tmp_path / "b"), "--steps", "25",
                 "--resume", "--lmbda", "0.01"]) == 1
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 20


def test_sigterm_after_an_update_still_resumes_exactly(tiny_data, tmp_path, monkeypatch):
    """A SIGTERM that lands right after the optimizer's update (before the loop counts the step) stops the run at
    a consistent step: resumed to the end, it has the weights of a run never stopped."""
    import os
    import signal

    from neuralcodecs.train import loop

    straight = _train(tiny_data, tmp_path / "a", 12)
    real_step, calls = loop.train_step, []

    def step_then_sigterm(*args, **kwargs):
        out = real_step(*args, **kwargs)
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(loop, "train_step", step_then_sigterm)
    stopped = _train(tiny_data, tmp_path / "b", 12)
    assert stopped["step"] == 5
    monkeypatch.setattr(loop, "train_step", real_step)
    resumed = _train(tiny_data, tmp_path / "b", 12, "--resume")
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the loop's handler is gone after it


def test_init_sources_load_in_order(tiny_data, tmp_path):
    """--init shipped,codec:NAME: the codec's own shipped weights, then the other codec's tensors where names and
    shapes match over them (balle2017 with minnen2018's transforms and gains, its own densities kept)."""
    run = _train(tiny_data, tmp_path / "t", 0, "--init", "shipped,codec:minnen2018")["model"]
    own, donor = weights.shipped_state("balle2017"), nc.create_codec("minnen2018").state_dict()
    taken = [k for k in run if k.startswith(("g_a.", "g_s.", "log_gain", "log_inv_gain"))]
    assert taken and all(torch.equal(run[k], donor[k].float()) for k in taken)
    densities = [k for k in run if k.startswith("latent_codec.") and own[k].is_floating_point()]
    assert densities and all(torch.equal(run[k], own[k].float()) for k in densities)
    assert not torch.equal(own["g_s.1.weight"].float(), donor["g_s.1.weight"].float())  # the test can tell them apart


def test_log_keeps_only_complete_steps(tmp_path):
    """A SIGTERM between the appends of one step's values leaves the lists ragged; the log writes what is whole."""
    from neuralcodecs.train.loop import _append_log

    log = {"step": [1, 2, 3], "loss": [0.5, 0.4, 0.3], "bpp": [1.0, 0.9], "psnr": [20.0, 21.0]}
    assert _append_log(tmp_path / "log.csv", log, 0) == 2
    assert (tmp_path / "log.csv").read_text().splitlines() == ["step,loss,bpp,psnr", "1,0.5,1,20", "2,0.4,0.9,21"]


@pytest.fixture
def fresh_decoders():
    """Decoders cached from temporary weights must not outlive the test, whether it passes or fails."""
    codec_module._decoder.cache_clear()
    yield
    codec_module._decoder.cache_clear()


def test_export_then_load_codes_and_checks_fingerprints(tiny_data, tmp_path, monkeypatch, photo, fresh_decoders):
    _train(tiny_data, tmp_path / "run", 5)
    monkeypatch.setenv("NEURALCODECS_WEIGHTS", str(tmp_path / "weights"))
    assert main(["export", str(tmp_path / "run")]) == 0
    entry = weights.manifest()["balle2017"]
    assert entry["steps"] == 5 and len(entry["sha256"]) == 64
    # a new run can start from the shipped weights (what a machine that lost runs/ resumes from)
    restarted = _train(tiny_data, tmp_path / "again", 0, "--init", "shipped")
    shipped = weights.shipped_state("balle2017")
    assert all(torch.equal(restarted["model"][k].half(), v) for k, v in shipped.items() if v.is_floating_point())
    # ... and counts the steps those weights had: its export says 5 + 3 steps, not 3
    _train(tiny_data, tmp_path / "again", 3, "--resume")
    assert main(["export", str(tmp_path / "again")]) == 0
    assert weights.manifest()["balle2017"]["steps"] == 8
    codec = nc.create_codec("balle2017", quality=3)
    data = codec.encode(photo)
    assert nc.decode(data).shape == photo.shape
    # a file made with other weights is refused with a clear error
    other = nc.create_codec("balle2017", quality=3)
    with torch.no_grad():
        other.g_s[1].weight.add_(0.01)
    other._fingerprint = None
    foreign = other.encode(photo)
    codec_module._decoder.cache_clear()
    with pytest.raises(nc.BitstreamError, match="weights"):
        nc.decode(foreign)


@pytest.mark.parametrize("name", ENTROPY_CODED)
def test_real_bytes_match_estimated_bits(name, photo):
    """The information bound: the range coder's bytes are within 1 % of -sum log2 p, plus 32 bits per chunk
    (a range coder's flush). On this 96x128 photo the gap is 0.5-1.1 %; a constant of 256 bits would allow 3-8 %."""
    from neuralcodecs.image import pad

    codec = nc.create_codec(name)
    x = pad(photo, codec.pad_to)  # what encode() hands encode_chunks (balle2018: multiples of 64)
    chunks = codec.encode_chunks(x)
    estimated = codec.estimate_bits(x)
    real = 8 * sum(len(c) for c in chunks)
    slack = 32 * len(chunks)
    assert estimated * 0.99 - slack <= real <= estimated * 1.01 + slack


@pytest.mark.parametrize("name", LEARNED)
def test_a_fresh_process_decodes_a_file_to_the_same_pixels(name, photo, tmp_path):
    data = nc.create_codec(name).encode(photo)
    (tmp_path / "f.ncdc").write_bytes(data)
    script = ("import sys, numpy as np, neuralcodecs as nc; "
              "np.save(sys.argv[2], nc.decode(open(sys.argv[1], 'rb').read()))")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "f.ncdc"), str(tmp_path / "out.npy")], check=True)
    assert np.array_equal(np.load(tmp_path / "out.npy"), nc.decode(data))


def test_unroll_is_refused_for_codecs_without_iterations():
    from neuralcodecs.codecs.balle2017 import Balle2017

    with pytest.raises(ValueError, match="not progressive"):
        Balle2017.for_training(name="balle2017").set_unroll(4)


def test_unknown_training_stage_is_refused(tiny_data, tmp_path, capsys):
    argv = ["train", "balle2017", "--data", str(tiny_data), "--out", str(tmp_path / "s"), "--steps", "1",
            "--crop", "32", "--stage", "nonsense"]
    assert main(argv) == 1
    assert "stages" in capsys.readouterr().err


def test_densities_train_at_their_own_lr_and_the_drop_divides_both(tiny_data, tmp_path):
    state = _train(tiny_data, tmp_path / "e", 3, "--lr", "1e-4", "--entropy-lr", "1e-2", "--lr-drop-step", "2")
    main_group, density_group = state["opt"]["param_groups"]
    assert (main_group["lr"], density_group["lr"]) == pytest.approx((1e-5, 1e-3))  # step 3 is past the drop
    # the density group is every entropy-model parameter except the quantiles (their own aux optimizer)
    model = nc.create_codec("balle2017")
    expected = sum(1 for m in model.entropy_models() for p in m.parameters()) - len(list(model.aux_parameters()))
    assert len(density_group["params"]) == expected > 0


def test_weights_written_xz_compressed_load_the_same(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURALCODECS_WEIGHTS", str(tmp_path))
    state = {"a.weight": torch.randn(4, 3), "t.counts": torch.arange(1000, dtype=torch.int32) % 7}
    plain = weights.write("x", state, {"codec": "x"})
    packed = weights.write("x", state, {"codec": "x"}, xz=True)
    assert packed.name == "x.safetensors.xz" and not plain.exists()  # one form of a codec's file at a time
    assert weights.manifest()["x"]["file"] == packed.name and packed.stat().st_size < 4000
    loaded = weights.shipped_state("x")
    assert torch.equal(loaded["t.counts"], state["t.counts"]) and torch.equal(loaded["a.weight"], state["a.weight"].half())
    assert weights.manifest()["x"]["fingerprint"] == weights.fingerprint(loaded).hex()


def test_int8_export_halves_the_file_and_loads_the_weights_it_was_measured_with(tiny_data, tmp_path, monkeypatch,
                                                                              photo, fresh_decoders):
    _train(tiny_data, tmp_path / "run", 2)
    monkeypatch.setenv("NEURALCODECS_WEIGHTS", str(tmp_path / "weights"))
    assert main(["export", str(tmp_path / "run")]) == 0
    half = (tmp_path / "weights" / "balle2017.safetensors").stat().st_size
    assert main(["export", str(tmp_path / "run"), "--int8"]) == 0
    entry = weights.manifest()["balle2017"]
    assert entry["storage"] == "int8" and (tmp_path / "weights" / entry["file"]).stat().st_size < 0.6 * half
    loaded = weights.shipped_state("balle2017")
    large = [k for k, v in loaded.items() if v.dim() >= 2 and v.numel() >= weights.INT8_MIN_SIZE]
    assert large and not any(k.endswith(weights.SCALE) for k in loaded)
    for k in large:  # on the 8-bit grid: stored again, the same values
        q, scale = weights.to_int8(loaded[k])
        assert q.dtype == torch.int8 and torch.equal(q.float() * scale.float(), loaded[k])
    # the recorded fingerprint names exactly the weights that load
    assert entry["fingerprint"] == weights.fingerprint(loaded).hex()
    codec_module._decoder.cache_clear()
    codec = nc.create_codec("balle2017", quality=3)
    assert nc.decode(codec.encode(photo)).shape == photo.shape
    # a state not on the grid is refused rather than written as other weights than the fingerprint names
    with pytest.raises(ValueError, match="round"):
        weights.write("y", {"w": torch.randn(64, 128)}, {"codec": "y"}, int8=True)


def test_export_average_ships_the_mean_of_the_runs_parameters(tiny_data, tmp_path, monkeypatch, fresh_decoders,
                                                               capsys):
    """`export RUN --average A B`: each parameter is the mean of the three (as shipped: in fp16), the tables are
    built from that mean, and a member of another codec is refused."""
    runs = [_train(tiny_data, tmp_path / f"r{i}", 2, "--seed", str(i)) for i in range(2)]
    # a third member: a snapshot a run keeps on the way (--snapshot-every), here at its step 2 of 3
    _train(tiny_data, tmp_path / "r2", 3, "--seed", "2", "--snapshot-every", "2")
    snapshot = tmp_path / "r2" / "snapshots" / "step-0000002.pt"
    assert sorted(p.name for p in snapshot.parent.iterdir()) == [snapshot.name]
    runs.append(torch.load(snapshot, weights_only=False))
    assert runs[2]["step"] == 2
    monkeypatch.setenv("NEURALCODECS_WEIGHTS", str(tmp_path / "weights"))
    assert main(["export", str(tmp_path / "r0"), "--average", str(tmp_path / "r1" / "checkpoint.pt"),
                 str(snapshot)]) == 0
    shipped = weights.shipped_state("balle2017")
    model = nc.create_codec("balle2017")
    for name, _ in model.named_parameters():
        mean = torch.stack([r["model"][name].float() for r in runs]).mean(dim=0)
        assert torch.equal(shipped[name], mean.half()), name
    assert len(weights.manifest()["balle2017"]["averaged"]) == 3
    # the tables are those of the mean (update_tables after averaging), not the first run's
    model.load_state_dict(shipped)
    before = {k: v.clone() for k, v in model.state_dict().items() if "table_" in k}
    model.update_tables()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    # members that trained something else are refused: another codec's shapes, other lambdas, not a checkpoint
    torch.save({**runs[1], "model": {**runs[1]["model"], "g_a.0.weight": torch.zeros(3)}}, tmp_path / "shape.pt")
    torch.save({**runs[1], "config": {**runs[1]["config"], "lmbda": [0.1]}}, tmp_path / "lmbda.pt")
    torch.save(runs[1]["model"], tmp_path / "bare.pt")
    capsys.readouterr()
    for bad, why in (("shape.pt", "another shape"), ("lmbda.pt", "another lmbda"), ("bare.pt", "not a training")):
        assert main(["export", str(tmp_path / "r0"), "--average", str(tmp_path / bad)]) == 1
        assert why in capsys.readouterr().err


def test_an_update_ships_as_differences_from_its_base_and_loads_as_their_sum(tiny_data, tmp_path, monkeypatch,
                                                                             photo, fresh_decoders, capsys):
    """`export RUN --base FILE`: the large tensors as 4-bit differences from FILE's (which stays as it is), the
    rest whole; they load as the sum, the fingerprint names them, and a changed base is refused."""
    _train(tiny_data, tmp_path / "run", 2)
    monkeypatch.setenv("NEURALCODECS_WEIGHTS", str(tmp_path / "weights"))
    assert main(["export", str(tmp_path / "run")]) == 0
    base = tmp_path / "weights" / "balle2017.safetensors"
    base_bytes, base_state = base.read_bytes(), weights.shipped_state("balle2017")
    run = _train(tiny_data, tmp_path / "run", 6, "--resume")["model"]
    assert main(["export", str(tmp_path / "run"), "--base", base.name]) == 0
    entry = weights.manifest()["balle2017"]
    update = tmp_path / "weights" / entry["file"]
    assert entry["file"] == "balle2017.update.safetensors.xz" and entry["base"] == base.name
    assert base.read_bytes() == base_bytes and update.stat().st_size < 0.5 * len(base_bytes)
    loaded = weights.shipped_state("balle2017")
    large = [k for k, v in loaded.items() if v.dim() >= 2 and v.numel() >= weights.INT8_MIN_SIZE]
    assert large and entry["fingerprint"] == weights.fingerprint(loaded).hex()
    for k in large:
        step = (run[k].float() - base_state[k]).abs().amax() / weights.DELTA_LIMIT
        assert (loaded[k] - run[k].float()).abs().max() <= step / 2 + 2 ** -10, k  # half a step (and fp16's)
        assert not torch.equal(loaded[k], base_state[k]), k  # the update moved it
    codec_module._decoder.cache_clear()
    codec = nc.create_codec("balle2017", quality=3)
    assert nc.decode(codec.encode(photo)).shape == photo.shape
    # an update of an update, and 8 bits with a base, are refused; a changed base cannot load
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), "--base", update.name]) == 1
    assert "update itself" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "run"), "--base", base.name, "--int8"]) == 1
    base.write_bytes(base_bytes[:-2] + b"\0\0")
    with pytest.raises(ValueError, match="not the file it was made from"):
        weights.shipped_state("balle2017")
    # exporting a whole file again replaces the update
    assert main(["export", str(tmp_path / "run")]) == 0
    assert not update.exists() and weights.manifest()["balle2017"]["file"] == base.name
    # a file another codec's update loads from is never replaced
    weights.write("other", weights.shipped_state("balle2017"), {"codec": "other"}, base=base.name)
    assert weights.manifest()["other"]["base"] == base.name
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run")]) == 1
    assert "base of another codec's update" in capsys.readouterr().err


def test_int8_storage_round_trips_exactly_down_to_near_dead_channels():
    """Stored again, 8-bit weights give the same bytes, also for channels whose scale would be subnormal in fp16;
    every value is within about half a step of its weight."""
    w = torch.randn(6, 64, 3, 3) * torch.tensor([1.0, 1e-2, 1e-3, 2e-5, 1e-7, 0.0]).view(-1, 1, 1, 1)
    q, scale = weights.to_int8(w)
    stored = q.float() * scale.float()
    again = weights.to_int8(stored)
    assert torch.equal(again[0], q) and torch.equal(again[1], scale)
    assert ((stored - w).abs() <= 0.6 * scale.float()).all()


def _rd_loss(codec, photo, data: bytes) -> float:
    """The training objective on a real file: lmbda * 255^2 * MSE of the decoded pixels + bpp of the bytes."""
    mse = np.mean((nc.decode(data).astype(np.float64) - photo) ** 2) / 255 ** 2
    return codec.lmbdas[codec.config.quality - 1] * 255 ** 2 * mse + 8 * len(data) / (photo.shape[0] * photo.shape[1])


@pytest.mark.parametrize("name", ["minnen2018", "theis2017"])  # a hyperprior with context; a factorized GSM
def test_latent_refinement_lowers_the_real_files_loss_and_keeps_the_format(name, photo):
    plain, refined = nc.create_codec(name), nc.create_codec(name, refine=20)
    a, b = plain.encode(photo), refined.encode(photo)
    assert _rd_loss(refined, photo, b) < _rd_loss(plain, photo, a)
    assert refined.encode(photo) == b  # the refinement's noise is seeded: same image, same bytes
    # refine is read by the encoder only: the file stores the same settings and decodes with the default codec
    assert nc.info(b)["settings"] == nc.info(a)["settings"] == plain.settings
    assert "refine" not in plain.settings


def test_refine_must_be_a_step_count():
    with pytest.raises(ValueError, match="refine"):
        nc.create_codec("balle2018", refine=-1)


def test_one_thread_holds_in_every_thread_while_another_is_inside():
    """Thread A opens a block; thread B, whose own thread count was 2 already, opens one while A is inside and
    codes on one thread; A closes first, and B is still on one thread; the count comes back when both closed."""
    import threading

    from neuralcodecs.threads import one_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    a_in, b_in, a_out, seen = threading.Event(), threading.Event(), threading.Event(), []

    def a():
        with one_thread():
            a_in.set()
            b_in.wait()
        a_out.set()

    def b():
        torch.set_num_threads(2)  # this thread's own setting, before A's block opens
        a_in.wait()
        with one_thread():
            seen.append(torch.get_num_threads())
            b_in.set()
            a_out.wait()
            seen.append(torch.get_num_threads())

    threads = [threading.Thread(target=f) for f in (a, b)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_stop_is_agreed_on_the_runs_device(tiny_data, tmp_path, monkeypatch):
    """The processes agree on stopping through a collective on the training device (nccl has no CPU tensors)."""
    from neuralcodecs.train.distributed import Ranks

    devices = []
    real = Ranks.everywhere
    monkeypatch.setattr(Ranks, "everywhere", lambda self, holds, device="not given": devices.append(str(device)) or
                        real(self, holds, "cpu"))
    _train(tiny_data, tmp_path / "run", 2)
    assert devices and all(d == "cpu" for d in devices) and len(devices) >= 4  # stop checks and finite-loss checks


@pytest.mark.parametrize("name", ["balle2017", "theis2017"])
def test_tiles_compute_what_the_whole_image_would(name, monkeypatch):
    """The transforms' tiles (learned.py) see at least their reach around them: cut into 2x4 tiles of 64 pixels
    and put together, g_a's latents and g_s's pixels are the whole image's, up to float rounding."""
    from neuralcodecs.image import from_tensor, to_tensor

    codec = nc.create_codec(name)
    s = codec.latent_stride
    x = np.ascontiguousarray(nc.load_image(ROOT / "samples" / "kodim23.png")[100:228, 200:456])
    with torch.no_grad():
        y_whole = codec.analysis(to_tensor(x))
        x_whole = from_tensor(codec.synthesis(torch.round(y_whole)))
        monkeypatch.setattr(codec, "tile", 64)
        assert len(codec._tiles(128 // s, 256 // s)) == 8
        y = codec._analyse(x)
        x_hat = codec._synthesise(torch.round(y_whole))
    assert torch.allclose(y, y_whole, atol=1e-4)
    diff = np.abs(x_hat.astype(int) - x_whole)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_the_cut_depends_on_the_image_alone():
    codec = nc.create_codec("balle2017")
    assert codec._tiles(32, 48) == [(0, 32, 0, 24), (0, 32, 24, 48)]  # Kodak, 768x512: two halves
    assert codec._tiles(48, 32) == [(0, 24, 0, 32), (24, 48, 0, 32)]
    assert codec._tiles(31, 31) == [(0, 31, 0, 31)]  # 496x496: whole
    tiles = codec._tiles(250, 160)  # 4000x2560 pixels: 4x3 tiles of at most 1024 pixels
    assert len(tiles) == 12 and max(b - a for a, b, _, _ in tiles) * 16 <= 1024


_DECODE_FILE = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
import neuralcodecs as nc
np.save(sys.argv[3], nc.decode(open(sys.argv[2], "rb").read()))
"""


def test_decoding_in_tiles_gives_the_same_pixels_with_one_and_two_threads(tmp_path):
    """A file whose image is cut in tiles decodes in fresh processes with 1 and 2 torch threads, and in this
    one, to the same pixels."""
    x = np.ascontiguousarray(nc.load_image(ROOT / "samples" / "kodim23.png")[:64, :576])
    codec = nc.create_codec("minnen2018")
    assert len(codec._tiles(64 // 16, 576 // 16)) == 2
    data = codec.encode(x)
    (tmp_path / "f.ncdc").write_bytes(data)
    here = nc.decode(data)
    for threads in (1, 2):
        subprocess.run([sys.executable, "-c", _DECODE_FILE, str(threads), str(tmp_path / "f.ncdc"),
                        str(tmp_path / "x.npy")], check=True)
        assert np.array_equal(np.load(tmp_path / "x.npy"), here)


def test_parallel_runs_each_piece_on_one_thread_in_the_callers_grad_mode():
    import threading

    from neuralcodecs.threads import coding_threads, one_thread, parallel

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    start = threading.Barrier(2, timeout=10)

    def piece(i):
        if i < 2:
            start.wait()  # the first two pieces run at the same time, in two threads
        return i, threading.get_ident(), torch.get_num_threads(), torch.is_grad_enabled()

    try:
        assert coding_threads() == 2
        with torch.no_grad():
            seen = parallel(piece, range(5))
        assert [s[0] for s in seen] == list(range(5)) and seen[0][1] != seen[1][1]
        assert all(s[2:] == (1, False) for s in seen)
        assert torch.get_num_threads() == 2
        with one_thread():
            assert coding_threads() == 2  # the caller's count, not the block's
            assert len({s[1] for s in parallel(piece, range(2))}) == 2
        assert parallel(lambda i: threading.get_ident(), range(3), at_most=1) == [threading.get_ident()] * 3
    finally:
        torch.set_num_threads(before)


def test_the_first_coding_converts_the_transforms_to_channels_last_and_later_ones_change_nothing(photo):
    """Coding runs g_a and g_s channels-last (VariableRateCodec._channels_last): the first coding converts their
    weights, and after that no coding replaces a parameter's storage (a cached decoder is shared by threads)."""
    codec = nc.create_codec("balle2017", quality=3)
    data = codec.encode(photo)
    params = [p for m in (codec.g_a, codec.g_s) for p in m.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in params)
    storage = [p.data_ptr() for p in params]
    codec.encode(photo)
    header, _, chunks = codec_module.open_file(data)
    codec.decode_file(header, chunks)
    assert [p.data_ptr() for p in params] == storage


def test_files_leave_out_the_settings_the_weights_fix(photo):
    """A file's fingerprint names the weights, and the weights fix the architecture (balle2017's N and M): files
    leave those settings out and the decoder takes them from the weights. A file that states them (files before
    2026-12-07 do) decodes when they agree, and is refused when they do not, before any network is built."""
    from neuralcodecs import container

    data = nc.create_codec("balle2017", quality=3).encode(photo)
    header, _, chunks = nc.codec.open_file(data)
    assert set(header.settings) == {"quality", "forward_adaptive"}
    stated = container.pack("balle2017", {**header.settings, "N": 128, "M": 192}, header.fingerprint, photo.shape,
                            chunks)
    assert len(stated) == len(data) + len(',"M":192,"N":128')
    assert np.array_equal(nc.decode(stated), nc.decode(data))
    wrong = container.pack("balle2017", {**header.settings, "M": 100000}, header.fingerprint, photo.shape, chunks)
    with pytest.raises(nc.BitstreamError, match="M=192"):
        nc.decode(wrong)
