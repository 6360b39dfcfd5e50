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
    _script("codec_speed").main(["--data", str(ROOT / "samples"), "--out", str(tmp_path), "--codec", "jpeg",
                                 "--limit", "1"])  # another codec: webp's row stays
    rows = json.loads((tmp_path / "codec_speed.json").read_text())["results"]
    assert [r["codec"] for r in rows] == ["webp", "jpeg"] and rows[0] == row


def test_rate_bound_measures_real_bytes_against_the_model(tmp_path):
    _script("rate_bound").main(["--data", str(ROOT / "samples"), "--out", str(tmp_path), "--codec", "balle2017",
                                "--quality", "2", "--limit", "1"])
    (row,) = json.loads((tmp_path / "rate_bound.json").read_text())["results"]
    assert row["codec"] == "balle2017" and row["quality"] == 2 and row["images"] == 1
    # the range coder is within 1 % of the information bound
    assert 0.99 < row["ratio_min"] <= row["ratio_max"] < 1.01
