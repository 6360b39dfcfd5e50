"""The Ray engine on a real local Ray instance: the same sweep, files and bytes as the local pool."""
import json

import pytest

from conftest import ROOT
from neuralcodecs.cli import main
from neuralcodecs.image import load_image, save_image

pytest.importorskip("ray")  # `make test` installs the extra; a plain `pip install neuralcodecs` has no Ray


@pytest.fixture(scope="module")
def two_images(tmp_path_factory):
    data = tmp_path_factory.mktemp("ray") / "data"
    data.mkdir()
    sample = load_image(ROOT / "samples" / "kodim23.png")
    save_image(data / "a.png", sample[:96, :128])
    save_image(data / "b.png", sample[200:264, 300:380])
    return data


def _without_times(doc: dict) -> dict:
    return {k: v for k, v in doc["results"].items() if not k.endswith("_time")}


def test_eval_on_ray_writes_what_the_local_pool_writes(two_images, tmp_path):
    sweep = ["eval", "--codec", "webp", "--quality", "30", "80", "--data", str(two_images)]
    assert main(sweep + ["--out", str(tmp_path / "local"), "--workers", "2"]) == 0
    assert main(sweep + ["--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"]) == 0
    for name in ("webp.json", "jpeg.json"):
        local, ray = (json.loads((tmp_path / d / name).read_text()) for d in ("local", "ray"))
        assert _without_times(ray) == _without_times(local)
    keys = [{json.loads(l)["key"] for l in (tmp_path / d / "jobs.jsonl").read_text().splitlines()} for d in ("local", "ray")]
    assert keys[0] == keys[1] and len(keys[0]) == 2 * (2 + 14)  # webp at 2 points and the jpeg anchor's 14


def test_batch_encode_on_ray_writes_the_same_files(two_images, tmp_path):
    for engine in ("local", "ray"):
        assert main(["encode", str(two_images), str(tmp_path / engine), "--codec", "jpeg", "--engine", engine]) == 0
    for name in ("a.ncdc", "b.ncdc"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
