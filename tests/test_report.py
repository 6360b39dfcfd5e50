"""`neuralcodecs report`: a self-contained page built from what `eval --crops` saved, loaded in a real headless
Chromium (Debian's `chromium`, which .ci/run installs; skipped, with a warning there, where it cannot be had)."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import ROOT
from neuralcodecs.cli import main
from neuralcodecs.image import load_image, save_image


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A sweep of jpeg and webp on one photo (large enough for MS-SSIM), its centre kept for the viewer."""
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    data.mkdir()
    save_image(data / "photo.png", load_image(ROOT / "samples" / "kodim23.png")[100:292, 200:520])
    assert main(["eval", "--codec", "webp", "--quality", "20", "50", "80", "--data", str(data),
                 "--out", str(root / "ev"), "--crops", "photo"]) == 0
    return root


def test_eval_keeps_crops_with_their_measurements(evaluated):
    crops = evaluated / "ev" / "crops" / "photo"
    assert load_image(crops / "original.png").shape == (192, 256, 3)
    for codec in ("jpeg", "webp"):
        sidecars = sorted((crops / codec).glob("*.json"))
        assert len(sidecars) >= 3
        assert all({"bpp", "psnr"} <= set(json.loads(s.read_text())) for s in sidecars)


def test_report_is_one_self_contained_file(evaluated):
    out = evaluated / "page"
    assert main(["report", str(evaluated / "ev"), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]
    # nothing fetched from elsewhere: no links, scripts or images by URL (only the SVG namespace names one)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page)
    assert set(re.findall(r"https?://[^\s\"']+", page)) <= {"http://www.w3.org/2000/svg"}
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1))
    assert {c["name"] for c in data["curves"]} == {"jpeg", "webp"}
    assert {c["kind"] for c in data["curves"]} == {"classical"}
    assert {r["name"] for r in data["bd"]} == {"jpeg", "webp"}
    assert set(data["crops"]["photo"]["codecs"]) == {"jpeg", "webp"}
    assert main(["report", str(evaluated / "ev"), "--out", str(out)]) == 1  # no overwrite without --force


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_page_renders_in_headless_chromium(evaluated, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    out = evaluated / "page-chromium"
    assert main(["report", str(evaluated / "ev"), "--out", str(out)]) == 0
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                          "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
                          (out / "index.html").as_uri()], capture_output=True, text=True, timeout=120)
    dom, log = run.stdout, run.stderr
    assert run.returncode == 0, log[-2000:]
    # the script ran to its end and reported no error, and the console saw none
    assert 'data-ready="1"' in dom and "data-errors" not in dom
    assert not [l for l in log.splitlines() if "CONSOLE" in l and ("Error" in l or "Uncaught" in l)]
    # the charts: one curve per codec in each of the two, with a point per rate point
    for chart in ("chart-psnr", "chart-msssim"):
        svg = re.search(rf'<svg id="{chart}".*?</svg>', dom, re.S).group(0)
        assert len(re.findall(r'class="curve" data-codec="(jpeg|webp)"', svg)) == 2
    # the viewer: both crops decoded in the browser
    loaded = re.findall(r'<img[^>]*id="view-(?:over|under)"[^>]*data-loaded="(\d+)"|'
                        r'<img[^>]*data-loaded="(\d+)"[^>]*id="view-(?:over|under)"', dom)
    assert len(loaded) == 2 and all(int(a or b) == 256 for a, b in loaded)
    assert 'id="bd-table"' in dom


def test_static_figure_has_a_panel_per_family(evaluated, tmp_path):
    from neuralcodecs.eval.figures import families

    assert families(["jpeg", "balle2017", "webp", "published"]) == (["balle2017"], ["jpeg", "webp", "published"])
    assert families(["minnen2018 refine=40", "webp quality=5"]) == (["minnen2018 refine=40"], ["webp quality=5"])
    png = tmp_path / "rd.png"
    assert main(["plot", *map(str, sorted((evaluated / "ev").glob("*.json"))), "--out", str(png)]) == 0
    one_row = load_image(png)
    from neuralcodecs.eval.figures import draw_rd
    from neuralcodecs.eval.references import make_curve

    curves = [make_curve(n, [0.2, 0.5, 1.0], [28 + d, 31 + d, 34 + d], [0.9, 0.95, 0.98]) for n, d in
              (("jpeg", 0), ("balle2017", 1), ("webp", 2))]
    draw_rd(curves, [], tmp_path / "two.png")
    two_rows = load_image(tmp_path / "two.png")
    assert two_rows.shape[0] > 1.8 * one_row.shape[0] and float(np.std(two_rows)) > 10


def test_a_lossless_crop_does_not_break_the_page(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    save_image(data / "p.png", load_image(ROOT / "samples" / "kodim23.png")[:64, :64])
    assert main(["eval", "--codec", "png", "--data", str(data), "--out", str(tmp_path / "ev"), "--crops", "p"]) == 0
    assert json.loads(next((tmp_path / "ev" / "crops" / "p" / "png").glob("*.json")).read_text())["psnr"] is None
    assert main(["report", str(tmp_path / "ev"), "--out", str(tmp_path / "page")]) == 0
