"""The GPU plan's dry run: every queued codec trains two steps on the CPU, checkpoints and exports, and what
the device would return fits its limits (at most 8 files, 16 MiB each)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "gpu"))

from plan import QUEUE, weight_files  # noqa: E402


def test_dry_run_of_the_whole_plan(tmp_path):
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(ROOT / "gpu" / "plan.py"), "--dry-run", "--data", str(ROOT / "samples"),
                    "--out", str(out), "--work", str(tmp_path / "work")], check=True, capture_output=True)
    report = json.loads((out / "plan.json").read_text())
    assert set(report["runs"]) == {c for c, _ in QUEUE}
    for codec, run in report["runs"].items():
        assert run["exit"] == 0 and run["steps"] == 2 and run["exported"], (codec, run)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(p.stat().st_size <= 16 * 2 ** 20 for p in files), files
    manifest = json.loads((out / "weights" / "manifest.json").read_text())
    assert {c for c, _ in QUEUE} <= set(manifest)
    for codec, options in QUEUE:  # as they would ship: fine-tunes as updates of the shipped file, the rest in 8 bits
        if "--snapshot-every" in options:
            assert manifest[codec]["file"] == f"{codec}.update.safetensors.xz" and "base" in manifest[codec]
            assert len(manifest[codec]["averaged"]) == 2  # the last weights (step 2) and the snapshot of step 1
            assert not (out / "weights" / manifest[codec]["base"]).exists()  # the base stays home, as it is
        else:
            assert manifest[codec].get("storage") == "int8"


def test_cross_device_script_round_trip_on_the_cpu(tmp_path):
    """gpu/cross_device.py as it runs when a GPU is lent, both halves here: files encoded in one process decode
    to the encoder's exact y_hat in others with 1 and 2 threads."""
    script = str(ROOT / "gpu" / "cross_device.py")
    subprocess.run([sys.executable, script, "encode", "--out", str(tmp_path)], check=True, capture_output=True)
    res = subprocess.run([sys.executable, script, "check", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_training_patches_pack_and_unpack(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "gpu" / "make_data.py"), str(ROOT / "samples"), "--out",
                    str(tmp_path / "p.npz"), "--patches", "1", "--size", "64"], check=True, capture_output=True)
    from make_data import unpack

    files = sorted(unpack(tmp_path / "p.npz", tmp_path / "png").iterdir())
    assert len(files) == 1
    import neuralcodecs as nc

    assert nc.load_image(files[0]).shape == (64, 64, 3)


def test_what_travels_to_a_lent_gpu_fits_after_slim():
    """The device tool refuses a working tree over 64 MiB. After `gpu/travel.py slim`, the tracked files left,
    the wheels (under 1 MiB) and the training data (at most make_data's MAX_MIB) fit, and what the plan runs
    from stays: the code, the manifest and the weights every queued run starts from."""
    from make_data import MAX_MIB
    from travel import LIMIT, WEIGHTS, _git, left_behind, needed_codecs

    gone = set(left_behind())
    kept = [f for f in _git("ls-files", "-z").split("\0") if f and f not in gone]
    assert sum((ROOT / f).stat().st_size for f in kept) + 2 ** 20 + MAX_MIB * 2 ** 20 <= LIMIT
    manifest = json.loads((ROOT / WEIGHTS / "manifest.json").read_text())
    # the queue's weights and those cross_device.py encodes with (a GPU run once lost its check to a missing one)
    assert {"minnen2018", "balle2018", *(c for c, _ in QUEUE)} <= needed_codecs()
    needed = {WEIGHTS + f for c in needed_codecs() for f in weight_files(manifest[c])}
    assert needed | {WEIGHTS + "manifest.json", "gpu/plan.py", "gpu/cross_device.py", "samples/kodim23.png",
                     "src/neuralcodecs/cli.py"} <= set(kept)
    assert any(f.startswith(WEIGHTS) and f.endswith(".safetensors") for f in gone)  # it does leave weights behind
