"""The benchmark scripts run (on the shipped sample, with a fast codec), so they cannot rot."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_codec_speed_times_a_codec_with_settings(tmp_path):
    _script("codec_speed").main(["--data", str(ROOT / "samples"), "--out", str(tmp_path), "--codec", "webp",
                                 "--limit", "1", "--set", "method=0"])
    doc = json.loads((tmp_path / "codec_speed.json").read_text())
    (row,) = doc["results"]
    assert doc["images"] == 1 and row["codec"] == "webp" and row["settings"] == {"method": 0}
    assert row["encode_s"] > 0 and row["decode_s"] > 0 and row["bpp"] > 0
    # another codec, the same folder named another way: webp's row stays
    _script("codec_speed").main(["--data", str(ROOT / "samples" / ".." / "samples"), "--out", str(tmp_path),
                                 "--codec", "jpeg", "--limit", "1"])
    rows = json.loads((tmp_path / "codec_speed.json").read_text())["results"]
    assert [r["codec"] for r in rows] == ["webp", "jpeg"] and rows[0] == row


def test_codec_speed_says_where_a_hyperprior_codecs_time_goes(tmp_path):
    _script("codec_speed").main(["--data", str(ROOT / "samples"), "--out", str(tmp_path), "--codec", "balle2018",
                                 "--limit", "1", "--quality-index", "low", "--stages"])
    (row,) = json.loads((tmp_path / "codec_speed.json").read_text())["results"]
    stages = row["stages"]
    assert set(stages) == {"analysis g_a", "synthesis g_s", "encode integer networks", "decode integer networks",
                           "encode latent codec, the rest", "decode latent codec, the rest"}
    assert stages["encode integer networks"] > 0 and stages["decode integer networks"] > 0


def test_rate_bound_measures_real_bytes_against_the_model(tmp_path):
    _script("rate_bound").main(["--data", str(ROOT / "samples"), "--out", str(tmp_path), "--codec", "balle2017",
                                "--quality", "2", "--limit", "1"])
    (row,) = json.loads((tmp_path / "rate_bound.json").read_text())["results"]
    assert row["codec"] == "balle2017" and row["quality"] == 2 and row["images"] == 1
    # the range coder is within 1 % of the information bound
    assert 0.99 < row["ratio_min"] <= row["ratio_max"] < 1.01


def test_toderici_tiles_counts_jpeg_without_its_header(tmp_path):
    import numpy as np

    import neuralcodecs as nc

    bench = _script("toderici_tiles")
    tile = nc.load_image(ROOT / "samples" / "kodim23.png")[100:132, 200:232]
    data = nc.create_codec("jpeg", quality=50).encode_native(np.ascontiguousarray(tile))
    scan = bench.jpeg_scan_bytes(data)
    # the headers (quantization and Huffman tables, frame and scan headers) are hundreds of bytes on their own
    assert 0 < scan < len(data) - 300 and data[-2:] == b"\xff\xd9"
    bench.main(["--data", str(ROOT / "samples"), "--out", str(tmp_path), "--tiles-per-image", "2"])
    doc = json.loads((tmp_path / "toderici_tiles.json").read_text())
    assert doc["tiles"] == 2 and [r["iterations"] for r in doc["rows"]] == list(range(1, 17))
    for r in doc["rows"]:
        assert r["tiles"] + r["jpeg_does_not_fit"] == 2
        if r["tiles"]:
            assert r["jpeg_mean_bytes"] <= r["bytes"]  # JPEG never gets more bytes than the network


def test_toderici_cpu_scores_every_iteration_on_seeded_crops():
    import torch

    from neuralcodecs.train.loop import TrainConfig, build_model

    bench = _script("toderici_cpu")
    images = sorted((ROOT / "samples").glob("*.png"))
    x = bench.eval_crops(images, 32, 3)
    assert x.shape == (3, 3, 32, 32) and torch.equal(x, bench.eval_crops(images, 32, 3))
    torch.manual_seed(0)
    model = build_model(TrainConfig(codec="toderici2016", data=[], out="", steps=0))
    model.set_unroll(2)  # measured with every iteration whatever the training unrolled
    psnr = bench.psnr_per_iteration(model, x)
    assert len(psnr) == 16 and all(5 < p < 60 for p in psnr)


def test_latent_refinement_reads_savings_off_the_codecs_own_curve(tmp_path):
    bench = _script("latent_refinement")
    curve = [(1000, 30.0), (2000, 32.0), (4000, 34.0)]
    assert bench.bytes_at(curve, 32.0) == 2000 and abs(bench.bytes_at(curve, 33.0) - 2000 * 2 ** 0.5) < 1e-9
    assert abs(bench.bytes_at(curve, 29.0) - 500 * 2 ** 0.5) < 1e-9  # below the curve: its lowest two points
    bench.main(["--data", str(ROOT / "samples"), "--out", str(tmp_path), "--codec", "balle2018", "--steps", "3",
                "--quality", "5", "--crop", "64", "64"])
    doc = json.loads((tmp_path / "latent_refinement.json").read_text())
    (row,) = doc["results"]
    assert doc["steps"] == 3 and row["image"] == "kodim23.png"
    import numpy as np

    import neuralcodecs as nc

    crop = np.ascontiguousarray(nc.load_image(ROOT / "samples" / "kodim23.png")[:64, :64])
    assert row["plain_bytes"] == len(nc.create_codec("balle2018", quality=5).encode(crop))
    assert row["bytes"] == len(nc.create_codec("balle2018", quality=5, refine=3).encode(crop))
    assert -1 < row["saving"] < 1


def test_entropy_gap_measures_the_codecs_own_bits(tmp_path):
    import neuralcodecs as nc

    _script("entropy_gap").main(["--data", str(ROOT / "samples"), "--out", str(tmp_path), "--codec", "minnen2018",
                                 "--qualities", "2", "--limit", "1"])
    bits = json.loads((tmp_path / "entropy_gap.json").read_text())["bits"]["2"]
    # the tabulated variant is what the codec codes: y, z and the shifts of forward adaptation are the codec's
    # estimate, up to the coding tables' 16-bit rounding (the benchmark's variants all use the Gaussian's exact bin
    # masses, so they compare with each other; 0.2-0.3 % from the estimate, measured)
    image = nc.load_image(ROOT / "samples" / "kodim23.png")  # 768 x 512: nothing cut
    estimate = nc.create_codec("minnen2018", quality=2).estimate_bits(image)
    assert bits["shifts"] > 0
    assert abs(bits["y_tabulated"] + bits["z"] + bits["shifts"] - estimate) < 0.005 * estimate
    # the other scales are the same model rounded otherwise: close to it, not equal
    assert 0 < abs(bits["y_predicted_scale"] / bits["y_tabulated"] - 1) < 0.02
    assert 0 < abs(bits["y_half_step_tables"] / bits["y_tabulated"] - 1) < 0.02
    assert bits["z_adapted"] > 0
