"""Metrics on known values."""
import math

import numpy as np
import pytest

from neuralcodecs import metrics


def test_psnr_known_value():
    a = np.zeros((10, 10, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 3  # MSE = 9 / 3 = 3 over all channels
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 3))
    assert metrics.psnr(a, a) == math.inf


def test_ssim_identity_and_order(photo):
    assert metrics.ssim(photo, photo) == pytest.approx(1.0)
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 10, photo.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(photo + np.random.default_rng(0).normal(0, 30, photo.shape), 0, 255).astype(np.uint8)
    assert 1 > metrics.ssim(photo, noisy) > metrics.ssim(photo, noisier) > 0


def test_ssim_constant_offset_closed_form():
    # For constant images x=a, y=b, SSIM = (2ab + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * 255)^2.
    a, b = 100, 110
    x = np.full((32, 32, 3), a, np.uint8)
    y = np.full((32, 32, 3), b, np.uint8)
    c1 = (0.01 * 255) ** 2
    # float32 leaves ~3e-5 here (variance by E[x^2] - E[x]^2 on flat data); on photos it is ~1e-7
    assert metrics.ssim(x, y) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-4)


def test_ms_ssim_needs_large_images(photo):
    assert math.isnan(metrics.ms_ssim(photo, photo))  # 96 pixels high: undefined
    big = np.tile(photo, (2, 2, 1))
    assert metrics.ms_ssim(big, big) == pytest.approx(1.0)
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert metrics.ms_ssim_from_db(metrics.ms_ssim_db(0.987)) == pytest.approx(0.987)


def test_psnr_hvs_identity_and_noise(photo):
    assert metrics.psnr_hvs(photo, photo) == (math.inf, math.inf)
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 5, photo.shape), 0, 255).astype(np.uint8)
    hvs, hvsm = metrics.psnr_hvs(photo, noisy)
    assert 25 < hvs < hvsm < 80  # HVS-M masks part of the noise, so it is higher


def test_bpp():
    assert metrics.bpp(1000, 100, 80) == 1.0


def test_fixation_density_keeps_the_image_shape_when_the_blur_is_wider_than_it():
    from neuralcodecs.metrics import fixation_density

    d = fixation_density(np.array([[5, 5], [0, 19]]), 20, 30, sigma=10)
    assert d.shape == (20, 30) and abs(d.sum() - 1) < 1e-9 and d[5, 5] > d[19, 0]


def test_weighted_psnr_refuses_weights_that_do_not_map_the_image():
    from neuralcodecs.metrics import weighted_psnr

    a, b = np.zeros((4, 6, 3), np.uint8), np.full((4, 6, 3), 3, np.uint8)
    assert weighted_psnr(a, b, np.ones((4, 6))) == pytest.approx(10 * np.log10(255 ** 2 / 9))
    for bad in (np.ones(6), np.zeros((4, 6)), -np.ones((4, 6))):
        with pytest.raises(ValueError, match="weights"):
            weighted_psnr(a, b, bad)
