"""The command line: files round-trip for every codec, nothing is overwritten, bad input is one line."""
import json
import subprocess
import sys

import numpy as np
import pytest

import neuralcodecs as nc
from neuralcodecs.cli import main
from conftest import SLOW_TO_ENCODE


@pytest.mark.parametrize("name", [n for n in nc.list_codecs(ready=True) if n not in SLOW_TO_ENCODE])
def test_encode_decode_through_files(name, png, tmp_path, capsys):
    coded, decoded = tmp_path / "x.ncdc", tmp_path / "x.png"
    assert main(["encode", str(png), str(coded), "--codec", name]) == 0
    assert main(["decode", str(coded), str(decoded)]) == 0
    assert np.array_equal(nc.load_image(decoded), nc.decode(coded.read_bytes()))
    assert main(["info", str(coded)]) == 0
    assert f'"codec": "{name}"' in capsys.readouterr().out


def test_never_overwrites_without_force(png, tmp_path, capsys):
    out = tmp_path / "x.ncdc"
    out.write_bytes(b"keep")
    assert main(["encode", str(png), str(out), "--codec", "jpeg"]) == 1
    assert out.read_bytes() == b"keep" and "--force" in capsys.readouterr().err
    assert main(["encode", str(png), str(out), "--codec", "jpeg", "--force"]) == 0
    assert out.read_bytes()[:4] == b"NCDC"


@pytest.mark.parametrize("kind", ["corrupted", "truncated", "empty", "foreign"])
def test_bad_files_give_one_line_and_exit_1(kind, png, tmp_path, capsys):
    good = tmp_path / "good.ncdc"
    assert main(["encode", str(png), str(good), "--codec", "webp"]) == 0
    data = good.read_bytes()
    bad = {"corrupted": data[:40] + bytes([data[40] ^ 0xFF]) + data[41:], "truncated": data[:len(data) // 2],
           "empty": b"", "foreign": png.read_bytes()}[kind]
    path = tmp_path / "bad.ncdc"
    path.write_bytes(bad)
    capsys.readouterr()
    for argv in (["decode", str(path), str(tmp_path / "out.png")], ["info", str(path)]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


def test_truncate_refuses_non_progressive(png, tmp_path, capsys):
    coded = tmp_path / "x.ncdc"
    main(["encode", str(png), str(coded), "--codec", "jpeg"])
    assert main(["truncate", str(coded), str(tmp_path / "y.ncdc"), "--steps", "1"]) == 1
    assert "not progressive" in capsys.readouterr().err


def test_console_script_has_no_traceback(tmp_path):
    missing = tmp_path / "missing.ncdc"
    r = subprocess.run([sys.executable, "-m", "neuralcodecs.cli", "decode", str(missing), str(tmp_path / "o.png")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_extract_writes_the_standard_file(png, tmp_path, capsys):
    coded, jpg = tmp_path / "x.ncdc", tmp_path / "x.jpg"
    main(["encode", str(png), str(coded), "--codec", "jpeg"])
    main(["info", str(coded)])
    assert "neuralcodecs extract" in capsys.readouterr().out
    assert main(["extract", str(coded), str(jpg)]) == 0
    assert jpg.read_bytes()[:2] == b"\xff\xd8"
    main(["encode", str(png), str(coded), "--codec", "fmm", "--force"])
    assert main(["extract", str(coded), str(tmp_path / "y.bin")]) == 1
    assert "no standard image file" in capsys.readouterr().err


def test_eval_sweeps_the_chosen_qualities_and_resumes(png, tmp_path):
    out = tmp_path / "sweep"
    args = ["eval", "--codec", "webp", "--quality", "30", "70", "--anchor", "webp", "--data", str(png.parent),
            "--out", str(out)]
    assert main(args) == 0
    log = (out / "jobs.jsonl").read_text()
    assert len(log.splitlines()) == 2  # one image, the two qualities asked for
    assert main(args + ["--resume"]) == 0
    assert (out / "jobs.jsonl").read_text() == log  # nothing run again (its timings would differ)


def test_train_takes_codec_settings_and_every_config_field(tmp_path):
    """`--set` reaches the codec's settings (toderici2017 with GRU cells); options come from TrainConfig."""
    import dataclasses

    from neuralcodecs.cli import build_parser
    from neuralcodecs.train import TrainConfig

    data = tmp_path / "data"
    data.mkdir()
    nc.save_image(data / "a.png", np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8))
    out = tmp_path / "run"
    assert main(["train", "toderici2017", "--set", "cell=gru", "--data", str(data), "--out", str(out),
                 "--steps", "1", "--crop", "32", "--batch", "1", "--threads", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["settings"] == {"cell": "gru"}
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for f in dataclasses.fields(TrainConfig):
        if f.name not in ("codec", "data", "out", "steps", "lmbda", "settings"):
            assert "--" + f.name.replace("_", "-") in help_text


def test_codec_commands_come_from_the_codecs():
    from neuralcodecs.cli import build_parser
    from neuralcodecs.registry import get_entry

    choices = build_parser()._subparsers._group_actions[0].choices
    for name in ("enhance", "upsample"):
        assert name in choices
    assert [c.name for c in get_entry("coconet").cls.commands] == ["upsample"]


def test_version_module_and_standard_streams(tmp_path, photo):
    nc.save_image(tmp_path / "a.png", photo)
    run = lambda *a, **k: subprocess.run([sys.executable, "-m", "neuralcodecs", *a], capture_output=True, **k)  # noqa: E731
    assert run("--version").stdout.decode().startswith("neuralcodecs ")
    assert b"jiang2017-enhance" in run("list").stdout
    coded = run("encode", "-", "-", "--codec", "jpeg", input=(tmp_path / "a.png").read_bytes())
    assert coded.returncode == 0 and coded.stdout[:4] == b"NCDC" and b"bytes" in coded.stderr
    png = run("decode", "-", "-", input=coded.stdout)
    assert png.returncode == 0 and png.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "b.png").write_bytes(png.stdout)
    assert np.array_equal(nc.load_image(tmp_path / "b.png"), nc.decode(coded.stdout))


def test_folder_in_folder_out(tmp_path, photo):
    src, coded, decoded = tmp_path / "src", tmp_path / "coded", tmp_path / "decoded"
    src.mkdir()
    for i in range(3):
        nc.save_image(src / f"{i}.png", photo[:, i * 8:])
    (src / "notes.txt").write_text("not an image")
    assert main(["encode", str(src), str(coded), "--codec", "webp"]) == 0
    assert sorted(p.name for p in coded.iterdir()) == ["0.ncdc", "1.ncdc", "2.ncdc"]
    assert main(["decode", str(coded), str(decoded)]) == 0
    assert np.array_equal(nc.load_image(decoded / "1.png"), nc.decode((coded / "1.ncdc").read_bytes()))
    (coded / "bad.ncdc").write_bytes(b"NCDC garbage")
    assert main(["decode", str(coded), str(decoded), "--force"]) == 1  # one failed file: reported, others written


@pytest.mark.parametrize("error", [RuntimeError("the codec library failed"), ImportError("no module named x")])
def test_library_failures_give_one_line(error, png, tmp_path, capsys, monkeypatch):
    """A codec library's failure or a missing optional library: one line and exit 1, and in folder mode the
    file is reported and skipped."""
    from neuralcodecs.registry import get_entry

    def fail(self, x):
        raise error

    monkeypatch.setattr(get_entry("webp").cls, "encode_chunks", fail)
    capsys.readouterr()
    assert main(["encode", str(png), str(tmp_path / "x.ncdc"), "--codec", "webp"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(error) in err and "Traceback" not in err
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(png.read_bytes())
    assert main(["encode", str(src), str(tmp_path / "out"), "--codec", "webp"]) == 1
    assert "a.png: " + str(error) in capsys.readouterr().err
