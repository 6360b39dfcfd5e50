"""The evaluation path: a tiny real sweep, BD numbers on curves with known answers, and the curve loaders."""
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

import neuralcodecs as nc
from neuralcodecs.eval import bd, common_interval, efficient_points, evaluate, load_curve, load_curves, make_curve, plot, rd_auc

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"
QUALITIES = {"jpeg": [10, 30, 50, 75, 90], "webp": [10, 30, 50, 75, 90]}


def _image(seed: int) -> np.ndarray:
    # Smooth ramps plus noise: compressible, yet each quality step changes size and error.
    y, x = np.mgrid[0:48, 0:64]
    base = np.stack([(x * 4 + seed * 30) % 256, (y * 5) % 256, ((x + y) * 3) % 256], -1).astype(np.float64)
    noise = np.random.default_rng(seed).normal(0, 8, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(2):
        nc.save_image(folder / f"im{i}.png", _image(i))
    return folder


@pytest.fixture(scope="module")
def run(images, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("eval")
    return evaluate(["jpeg", "webp"], images, out, qualities=QUALITIES, progress=False), out


def test_evaluate_writes_every_file(run):
    result, out = run
    for name in ("per_image.csv", "jpeg.json", "webp.json", "bd.csv", "bd.md", "rd.png"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 5 * 2  # codecs x qualities x images
    assert {"codec", "quality", "image", "bpp", "psnr-rgb", "encoding_time", "decoding_time"} <= set(rows[0])


def test_codec_json_layout(run):
    result, out = run
    doc = json.loads((out / "jpeg.json").read_text())
    assert doc["name"] == "jpeg" and doc["description"]
    res = doc["results"]
    keys = {"quality", "bpp", "psnr-rgb", "ms-ssim-rgb", "ssim-rgb", "ms-ssim-db", "psnr-hvs", "psnr-hvs-m",
            "encoding_time", "decoding_time"}
    assert keys <= set(res)
    assert all(len(res[k]) == 5 for k in keys)
    assert res["bpp"] == sorted(res["bpp"]) and res["quality"] == sorted(res["quality"])  # more quality, more bits
    assert res["psnr-rgb"] == sorted(res["psnr-rgb"])
    assert all(v is None for v in res["ms-ssim-rgb"])  # undefined below 161 pixels: null, not NaN, in JSON
    assert res["bpp"] == result["curves"]["jpeg"]["bpp"]
    # Our own output reads back with the same loader as the published curves.
    curve = load_curve(out / "jpeg.json")
    assert np.allclose(curve.bpp, res["bpp"]) and np.allclose(curve.psnr, res["psnr-rgb"])


def test_bd_of_anchor_against_itself_is_zero(run):
    result, out = run
    rows = {r["name"]: r for r in result["bd"]}
    assert rows["jpeg"]["bd_rate_psnr"] == pytest.approx(0, abs=1e-9)
    assert rows["jpeg"]["bd_psnr"] == pytest.approx(0, abs=1e-9)
    assert rows["jpeg"]["bd_rate_msssim"] is None and "MS-SSIM" in rows["jpeg"]["note"]
    assert rows["webp"]["bd_rate_psnr"] is not None
    assert "| jpeg | ours |" in (out / "bd.md").read_text()


def test_plot_redraws_from_json(run, tmp_path):
    _, out = run
    refs = [SHARED / "compressai-kodak" / "jpeg.json"] if SHARED.is_dir() else []
    plot([out / "jpeg.json", out / "webp.json"], tmp_path / "rd.png", references=refs)
    assert (tmp_path / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_workers_give_the_same_numbers(images, run, tmp_path):
    result, _ = run
    again = evaluate(["jpeg"], images, tmp_path, workers=2, qualities={"jpeg": QUALITIES["jpeg"]}, progress=False)
    for k in ("bpp", "psnr-rgb", "ssim-rgb", "psnr-hvs"):
        assert again["curves"]["jpeg"][k] == result["curves"]["jpeg"][k]


def test_resume_keeps_logged_jobs_and_runs_the_rest(images, run, tmp_path):
    result, out = run
    lines = (out / "jobs.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 5  # every (codec, quality, image) job of the fixture's sweep
    kept = [json.loads(line) for line in lines[:3]]
    kept[0]["row"]["psnr-hvs"] = 99.0  # a value no codec run would give: it can only come from the log
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept) + lines[3][:20])  # cut off
    again = evaluate(["jpeg", "webp"], images, tmp_path, qualities=QUALITIES, progress=False, resume=True)
    with open(tmp_path / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["psnr-hvs"]) == 99.0 and len(rows) == 20
    for k in ("bpp", "psnr-rgb", "ssim-rgb"):  # the rerun jobs measure the same (all but the timings)
        assert again["curves"]["webp"][k] == result["curves"]["webp"][k]
    assert [json.loads(line)["key"] for line in (tmp_path / "jobs.jsonl").read_text().splitlines()] == \
        [json.loads(line)["key"] for line in lines[:3]] + [json.loads(line)["key"] for line in lines[3:]]
    evaluate(["jpeg"], images, tmp_path, qualities={"jpeg": [10]}, progress=False)  # no resume: a fresh log
    assert len((tmp_path / "jobs.jsonl").read_text().splitlines()) == 2


def test_settings_reach_the_evaluated_codec_and_its_json(images, run, tmp_path):
    result, _ = run
    res = evaluate(["webp"], images, tmp_path, anchor="jpeg", qualities={"webp": [50], "jpeg": QUALITIES["jpeg"]},
                   settings={"method": 0}, progress=False)
    assert json.loads((tmp_path / "webp.json").read_text())["meta"]["settings"]["method"] == 0
    assert json.loads((tmp_path / "jpeg.json").read_text())["meta"]["settings"] == \
        json.loads((run[1] / "jpeg.json").read_text())["meta"]["settings"]  # the anchor keeps its defaults
    assert res["curves"]["jpeg"]["bpp"] == result["curves"]["jpeg"]["bpp"]


def test_bad_arguments_fail_before_work(images, tmp_path):
    with pytest.raises(ValueError, match="bad settings"):  # a setting the codec does not have
        evaluate(["jpeg"], images, tmp_path, settings={"no_such_setting": 1}, progress=False)
    with pytest.raises(ValueError, match="unknown codec"):
        evaluate(["no-such-codec"], images, tmp_path, progress=False)
    with pytest.raises(ValueError, match="not evaluated"):
        evaluate(["jpeg"], images, tmp_path, qualities={"webp": [50]}, progress=False)


# -- BD and RD-AUC on curves with known answers ------------------------------------------------------

RATE = np.array([0.25, 0.5, 1.0, 2.0])
PSNR = np.array([28.0, 31.0, 34.0, 37.0])


def test_bd_rate_of_a_curve_using_080_of_the_bits_is_minus_20_percent():
    value, reason = bd((RATE, PSNR), (0.8 * RATE, PSNR), "rate")
    assert reason is None and value == pytest.approx(-20.0, abs=1e-9)


def test_bd_psnr_of_a_curve_one_db_better_is_one():
    value, reason = bd((RATE, PSNR), (RATE, PSNR + 1), "quality")
    assert reason is None and value == pytest.approx(1.0, abs=1e-9)


def test_bd_reports_why_it_cannot_be_computed():
    assert bd((RATE, PSNR), (np.array([8.0]), np.array([np.inf])), "rate") == (None, "0 usable of 1 point (needs 4)")
    value, reason = bd((RATE, PSNR), (RATE, PSNR + 20), "rate")  # no common quality range
    assert value is None and "no overlap" in reason


def test_efficient_points_drop_dominated_and_invalid_points():
    r, d = efficient_points(np.array([1.0, 0.5, 2.0, 1.5, 3.0]), np.array([30.0, 28.0, 33.0, 29.0, np.nan]))
    assert r.tolist() == [0.5, 1.0, 2.0] and d.tolist() == [28.0, 30.0, 33.0]


def test_rd_auc_is_mean_psnr_over_the_common_interval():
    a = make_curve("a", [0.0 + 1e-3, 1, 2, 3], [30.002, 32, 34, 36])  # psnr = 30 + 2 bpp
    b = make_curve("b", [0.5, 1.5, 2.5], [20, 21, 22])
    lo, hi = common_interval([a, b])
    assert (lo, hi) == (0.5, 2.5)
    assert rd_auc(a, 1.0, 2.0)[0] == pytest.approx(33.0)
    assert rd_auc(b, lo, hi)[0] == pytest.approx(21.0)
    assert rd_auc(b, 0.1, 2.0) == (None, "does not cover 0.100-2.000 bpp")


# -- loaders -------------------------------------------------------------------------------------

def test_loaders_on_synthetic_files(tmp_path):
    coin = tmp_path / "coin.json"  # COIN's quirk: trailing commas
    coin.write_text('{"name": "COIN", "results": {"psnr": [23.0, 22.0,], "bpp": [0.1, 0.05,],}}')
    c = load_curve(coin)
    assert c.name == "COIN" and c.bpp.tolist() == [0.05, 0.1] and c.psnr.tolist() == [22.0, 23.0]
    assert c.ms_ssim is None
    (tmp_path / "PSNR_sRGB_RGB").mkdir()
    (tmp_path / "MS-SSIM_sRGB_RGB").mkdir()
    head = '# Aggregate rate-distortion data for "Toy" on kodak.\n# The second column contains {} values.\n\n'
    (tmp_path / "PSNR_sRGB_RGB" / "toy.txt").write_text(head.format("PSNR/sRGB/R'G'B'") + "0.1, 25.0\n0.2, 27.5\n")
    (tmp_path / "MS-SSIM_sRGB_RGB" / "toy.txt").write_text(head.format("MS-SSIM/sRGB/R'G'B'") + "0.1, 0.9\n0.2, 0.99\n")
    t = load_curve(tmp_path / "PSNR_sRGB_RGB" / "toy.txt")
    assert t.name == "Toy" and t.psnr.tolist() == [25.0, 27.5]
    assert t.ms_ssim_db == pytest.approx([10.0, 20.0])  # the sibling MS-SSIM file is merged, raw -> dB


shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/reference is not beside the checkout")


@shared
def test_load_compressai_and_tfc_references():
    jpeg = load_curve(SHARED / "compressai-kodak" / "jpeg.json")
    assert len(jpeg) == 19 and jpeg.ms_ssim is not None and 23 < jpeg.psnr[0] < 24
    elic = load_curve(SHARED / "compressai-kodak" / "paper-elic2022_ms-ssim.json")  # MS-SSIM in dB only
    raw = json.loads((SHARED / "compressai-kodak" / "paper-elic2022_ms-ssim.json").read_text())
    assert elic.psnr is None and elic.ms_ssim_db == pytest.approx(sorted(raw["results"]["ms-ssim-db-rgb"]))
    tfc = load_curve(SHARED / "tfc-kodak" / "PSNR_sRGB_RGB" / "jpeg420.txt")
    assert tfc.name == "JPEG (4:2:0)" and len(tfc) == 100 and tfc.ms_ssim is not None
    assert np.all(np.diff(tfc.bpp) >= 0) and 0.7 < tfc.ms_ssim.min() < tfc.ms_ssim.max() < 1


@shared
def test_load_coin_and_tcm_references():
    coin = load_curve(SHARED / "coin-kodak" / "coin-results.json")
    assert coin.name == "COIN" and len(coin) == 6 and math.isclose(coin.psnr[-1], 30.644)
    tcm = load_curves(SHARED / "sota-kodak" / "tcm-kodak.json")
    assert [c.name.rsplit("[", 1)[1] for c in tcm] == ["large]", "middle]", "small]"]
    assert load_curve(SHARED / "sota-kodak" / "tcm-kodak.json").name == tcm[0].name
    assert load_curve(SHARED / "sota-kodak" / "tcm-kodak.json", variant="small").psnr[0] == pytest.approx(29.99)


def test_plot_with_anchor_rewrites_the_bd_table(run, tmp_path):
    result, out = run
    files = plot([out / "jpeg.json", out / "webp.json"], tmp_path / "rd.png", anchor="jpeg")
    assert tmp_path / "bd.md" in files
    again = (tmp_path / "bd.csv").read_text().splitlines()
    assert again[:3] == (out / "bd.csv").read_text().splitlines()[:3]  # header, jpeg, webp rows as the sweep wrote
    with pytest.raises(ValueError, match="anchor"):
        plot([out / "webp.json"], tmp_path / "rd2.png", anchor="jpeg")


def test_the_figure_draws_the_anchor_it_was_given(run, tmp_path, monkeypatch):
    """The thin anchor line in rd.png is the BD-rate anchor, also when it is a curve file, not jpeg by default."""
    from neuralcodecs.eval import figures

    result, out = run
    drawn = []
    monkeypatch.setattr(figures, "draw_rd", lambda ours, refs, png, title=None, anchor=None: drawn.append(anchor))
    plot([out / "webp.json"], tmp_path / "a.png", anchor=str(out / "jpeg.json"))
    plot([out / "jpeg.json", out / "webp.json"], tmp_path / "b.png")
    assert drawn[0].name == "jpeg" and drawn[1] is None


def test_psnr_at_fixed_rates_interpolates_linearly():
    from neuralcodecs.eval.bd import psnr_at

    c = make_curve("c", [0.2, 0.4, 1.2], [28.0, 30.0, 36.0])
    assert psnr_at(c, 0.25) == pytest.approx(28.5)
    assert psnr_at(c, 1.0) == pytest.approx(34.5)
    assert psnr_at(c, 0.1) is None and psnr_at(c, 2.0) is None
