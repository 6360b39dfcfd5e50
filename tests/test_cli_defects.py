"""Each command-line defect found by trying the tool as an attacker and as a new user would: a clean one-line
error or the right result, never a traceback, a silently lossy output or a lost file."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import neuralcodecs as nc
from neuralcodecs import container
from neuralcodecs.cli import main


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("codec, setting", [("balle2017", "N=64"), ("toderici2017", "cell=gru"),
                                            ("theis2017", "M=100000")])
def test_architecture_settings_other_than_the_shipped_weights_are_refused(codec, setting, png, tmp_path, capsys):
    assert main(["encode", str(png), str(tmp_path / "x.ncdc"), "--codec", codec, "--set", setting]) == 1
    _one_line_error(capsys, "shipped weights")


def test_enhance_refuses_a_non_jpeg_and_reads_cmyk(png, tmp_path, capsys, photo):
    assert main(["enhance", str(png), str(tmp_path / "e.png")]) == 1
    _one_line_error(capsys, "not a JPEG")
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(photo).convert("CMYK").save(cmyk, quality=40)
    assert main(["enhance", str(cmyk), str(tmp_path / "e.png")]) == 0
    assert nc.load_image(tmp_path / "e.png").shape == photo.shape


def test_eval_over_a_folder_with_an_rgba_png(tmp_path, photo):
    data = tmp_path / "data"
    data.mkdir()
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 200, np.uint8)], axis=2)
    nc.save_image(data / "a.png", rgba)
    assert main(["eval", "--codec", "jpeg", "--quality", "50", "--data", str(data), "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "jpeg.json").read_text())["results"]["bpp"]


@pytest.mark.parametrize("suffix", [".jpg", ".gif", ".webp", ".txt"])
def test_decode_refuses_lossy_or_unknown_suffixes(suffix, png, tmp_path, capsys):
    coded = tmp_path / "x.ncdc"
    assert main(["encode", str(png), str(coded), "--codec", "jpeg"]) == 0
    assert main(["decode", str(coded), str(tmp_path / f"out{suffix}")]) == 1
    _one_line_error(capsys, "losslessly")
    assert not (tmp_path / f"out{suffix}").exists()
    assert main(["decode", str(coded), str(tmp_path / "out.ppm")]) == 0  # a lossless one is fine


def test_outputs_get_normal_permissions(png, tmp_path):
    umask = os.umask(0o022)
    try:
        main(["encode", str(png), str(tmp_path / "x.ncdc"), "--codec", "jpeg"])
        main(["decode", str(tmp_path / "x.ncdc"), str(tmp_path / "x.png")])
    finally:
        os.umask(umask)
    for name in ("x.ncdc", "x.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def test_short_coconet_budget_does_not_compile(monkeypatch, photo):
    import torch

    def refuse(*a, **k):
        raise AssertionError("compiled under a short budget")

    monkeypatch.setattr(torch, "compile", refuse)
    data = nc.create_codec("coconet", quality=1, budget=5, iterations=20).encode(photo[:32, :32])
    assert nc.decode(data).shape == (32, 32, 3)


def test_exif_orientation_is_applied(tmp_path, photo):
    im = Image.fromarray(photo)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert nc.load_image(tmp_path / "r.jpg").shape == (photo.shape[1], photo.shape[0], 3)


def test_fractional_quality_is_refused_for_jpeg(png, tmp_path, capsys):
    assert main(["encode", str(png), str(tmp_path / "x.ncdc"), "--codec", "jpeg", "--quality", "75.5"]) == 1
    _one_line_error(capsys, "integer")


def test_non_progressive_file_with_an_extra_chunk_is_refused(photo):
    data = nc.create_codec("webp").encode(photo)
    h = container.read_header(data)
    chunks = container.read_chunks(data, h, allow_partial=False)
    extra = container.pack(h.name, h.settings, h.fingerprint, (h.height, h.width, h.channels), chunks + chunks)
    with pytest.raises(nc.BitstreamError, match="chunks"):
        nc.decode(extra)


def test_demo_and_plot_do_not_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--codec", "jpeg", "--out", str(out)]) == 0
    assert main(["demo", "--codec", "jpeg", "--out", str(out)]) == 1
    _one_line_error(capsys, "--force")
    assert main(["demo", "--codec", "jpeg", "--out", str(out), "--force"]) == 0
    curve = tmp_path / "c.json"
    curve.write_text(json.dumps({"name": "c", "results": {"bpp": [0.5, 1.0], "psnr-rgb": [30, 33]}}))
    (tmp_path / "rd.png").write_bytes(b"keep")
    assert main(["plot", str(curve), "--out", str(tmp_path / "rd.png")]) == 1
    assert (tmp_path / "rd.png").read_bytes() == b"keep"


def test_rgba_input_can_be_flattened(tmp_path, photo, capsys):
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 128, np.uint8)], axis=2)
    nc.save_image(tmp_path / "a.png", rgba)
    assert main(["encode", str(tmp_path / "a.png"), str(tmp_path / "a.ncdc"), "--codec", "webp"]) == 1
    _one_line_error(capsys, "--alpha")
    assert main(["encode", str(tmp_path / "a.png"), str(tmp_path / "a.ncdc"), "--codec", "webp",
                 "--alpha", "flatten"]) == 0


def test_sixteen_bit_and_float_gray_images_keep_their_brightness(tmp_path):
    """A dark 16-bit PNG stays dark (it was scaled as if 0..255, 257x too bright) and a float image in [0, 1]
    is not black."""
    dark = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 4)  # 0..252 of 65535
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    assert Image.open(tmp_path / "dark16.png").mode == "I;16"
    assert nc.load_image(tmp_path / "dark16.png").max() == 1  # 252 / 257, rounded
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(tmp_path / "f.tif")
    assert nc.load_image(tmp_path / "f.tif").max() == 255


def test_truncated_and_oversized_image_files_are_a_value_error_before_decoding(tmp_path, png):
    """A half PNG is "not a readable image" (Pillow's OSError was let through); a header claiming more than
    the library handles is refused from its size alone, before Pillow decodes (and allocates) the pixels."""
    data = png.read_bytes()
    (tmp_path / "half.png").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="not a readable image"):
        nc.load_image(tmp_path / "half.png")
    Image.new("L", (70000, 2)).save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match="larger than this library handles"):
        nc.load_image(tmp_path / "wide.png")
    with pytest.raises(FileNotFoundError):
        nc.load_image(tmp_path / "missing.png")


@pytest.mark.parametrize("value", ["lots", "0", "-5"])
def test_a_bad_pixel_limit_in_the_environment_is_named(value, monkeypatch, photo):
    monkeypatch.setenv("NEURALCODECS_MAX_PIXELS", value)
    data = nc.encode(photo, "png")
    with pytest.raises(ValueError, match="NEURALCODECS_MAX_PIXELS"):
        nc.decode(data)


def test_gray_with_alpha_stays_gray_once_its_alpha_is_dropped_or_flattened(tmp_path):
    la = np.zeros((4, 5, 2), np.uint8)
    la[..., 0], la[..., 1] = 100, 128
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert nc.load_image(tmp_path / "la.png").shape == (4, 5, 4)  # kept alpha: RGBA, the only layout with it
    assert np.array_equal(nc.load_image(tmp_path / "la.png", alpha="drop"), np.full((4, 5), 100, np.uint8))
    assert np.array_equal(nc.load_image(tmp_path / "la.png", alpha="flatten"),
                          np.full((4, 5), round(100 * 128 / 255 + 255 * 127 / 255), np.uint8))
