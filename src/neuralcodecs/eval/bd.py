"""Comparing curves with single numbers: Bjontegaard deltas against an anchor, and RD-AUC.

BD-rate (%)      average rate difference at equal quality: -20 means 20 % fewer bits than the anchor.
BD-PSNR (dB)     average PSNR difference at equal rate.
BD-rate MS-SSIM  BD-rate with MS-SSIM in dB, -10 log10(1 - MS-SSIM), as quality.
                 All three from the `bjontegaard` package (Akima interpolation, log rate), integrated
                 over the range where test and anchor overlap.
RD-AUC (dB)      the mean PSNR of a codec over one bpp interval shared by every codec of the run:
                 the area under its PSNR-vs-bpp curve (piecewise linear between measured points,
                 integrated exactly) divided by the interval's width. Unlike BD it needs no anchor and
                 ranks all codecs on the same footing; higher is better.

Curves are first reduced to their efficient points (see `efficient_points`), which the interpolation
needs, and a number that cannot be computed is None with the reason in the row's note.
"""
from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .references import Curve

MIN_POINTS = 4  # a cubic-type interpolation through fewer points says more about the method than the codec
METHOD = "akima"

RATES = (0.25, 0.5, 1.0)  # bpp where the table also gives each curve's PSNR, as papers quote them
COLUMNS = ("name", "kind", "points", "bd_rate_psnr", "bd_psnr", "bd_rate_msssim", "rd_auc",
           *(f"psnr_at_{r:g}" for r in RATES), "note")
HEADERS = {"name": "codec", "kind": "kind", "points": "points", "bd_rate_psnr": "BD-rate PSNR (%)",
           "bd_psnr": "BD-PSNR (dB)", "bd_rate_msssim": "BD-rate MS-SSIM (%)", "rd_auc": "RD-AUC (dB)",
           **{f"psnr_at_{r:g}": f"PSNR @{r:g} bpp" for r in RATES}, "note": "note"}


def efficient_points(rate: np.ndarray | None, dist: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The finite points sorted by rate, each of better quality than every cheaper one.

    BD interpolates rate as a function of quality and quality as a function of rate, so both must rise
    strictly. A point with more bits and no better quality is one nobody would pick; dropping it (rather
    than failing) lets noisy published curves and saturated quality settings through.
    """
    if rate is None or dist is None:
        return np.empty(0), np.empty(0)
    rate, dist = np.asarray(rate, np.float64), np.asarray(dist, np.float64)
    ok = np.isfinite(rate) & np.isfinite(dist) & (rate > 0)
    r, d = rate[ok], dist[ok]
    order = np.lexsort((-d, r))  # by rate; among equal rates the best quality first, so the rest drop
    keep: list[int] = []
    for i in order:
        if not keep or d[i] > d[keep[-1]]:
            keep.append(i)
    return r[keep], d[keep]


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of the joint range of a and b that both cover (0 when disjoint)."""
    joint = max(a.max(), b.max()) - min(a.min(), b.min())
    common = min(a.max(), b.max()) - max(a.min(), b.min())
    return max(common, 0.0) / joint if joint > 0 else 0.0


def bd(anchor: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
       what: str = "rate") -> tuple[float | None, str | None]:
    """BD-rate (%) if what == "rate", else BD-quality (dB) of test against anchor, both given as
    (rate, quality) points; (None, reason) when it cannot be computed."""
    import bjontegaard

    ra, da = efficient_points(*anchor)
    rt, dt = efficient_points(*test)
    if len(ra) < MIN_POINTS:
        return None, f"anchor has {len(ra)} usable points (needs {MIN_POINTS})"
    if len(rt) < MIN_POINTS:
        n = len(test[0])
        return None, f"{len(rt)} usable of {n} point{'s' * (n != 1)} (needs {MIN_POINTS})"
    # BD-rate integrates over quality, BD-PSNR over log rate: the overlap that matters differs.
    axis_a, axis_t = (da, dt) if what == "rate" else (np.log10(ra), np.log10(rt))
    if _overlap(axis_a, axis_t) == 0:
        return None, "no overlap with anchor" + (" in quality" if what == "rate" else " in rate")
    fn: Callable[..., float] = bjontegaard.bd_rate if what == "rate" else bjontegaard.bd_psnr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package warns on partial overlap; the note reports it instead
        value = float(fn(ra, da, rt, dt, method=METHOD, require_matching_points=False))
    return (value, None) if math.isfinite(value) else (None, "not finite")


def common_interval(curves: list[Curve]) -> tuple[float, float] | None:
    """The bpp interval every curve with at least two efficient PSNR points covers; None if empty."""
    spans = [(r.min(), r.max()) for r, _ in (efficient_points(c.bpp, c.psnr) for c in curves) if len(r) >= 2]
    if not spans:
        return None
    lo, hi = max(s[0] for s in spans), min(s[1] for s in spans)
    return (float(lo), float(hi)) if lo < hi else None


def rd_auc(curve: Curve, lo: float, hi: float) -> tuple[float | None, str | None]:
    """Mean PSNR (dB) over [lo, hi] bpp: the exact integral of the piecewise-linear curve / (hi - lo)."""
    r, d = efficient_points(curve.bpp, curve.psnr)
    if len(r) < 2:
        return None, "needs 2 usable PSNR points"
    if r[0] > lo + 1e-12 or r[-1] < hi - 1e-12:
        return None, f"does not cover {lo:.3f}-{hi:.3f} bpp"
    # The knots inside the interval plus its ends: trapezoids on these are exact for a linear interpolant.
    x = np.unique(np.concatenate([[lo, hi], r[(r > lo) & (r < hi)]]))
    y = np.interp(x, r, d)
    area = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))
    return area / (hi - lo), None


def psnr_at(curve: Curve, rate: float) -> float | None:
    """PSNR at `rate` bpp on the piecewise-linear curve through the efficient points (as RD-AUC); None
    outside the measured range."""
    r, d = efficient_points(curve.bpp, curve.psnr)
    if len(r) < 2 or not r[0] <= rate <= r[-1]:
        return None
    return float(np.interp(rate, r, d))


def bd_table(anchor: Curve, curves: list[tuple[Curve, str]],
             interval: tuple[float, float] | None) -> list[dict[str, Any]]:
    """One row per (curve, kind) with BD numbers against `anchor` and RD-AUC over `interval`."""
    rows = []
    for curve, kind in curves:
        notes: list[str] = []
        row: dict[str, Any] = {"name": curve.name, "kind": kind, "points": len(curve)}
        for key, a, t, what, label in (
            ("bd_rate_psnr", anchor.psnr, curve.psnr, "rate", "PSNR"),
            ("bd_psnr", anchor.psnr, curve.psnr, "quality", "PSNR"),
            ("bd_rate_msssim", anchor.ms_ssim_db, curve.ms_ssim_db, "rate", "MS-SSIM"),
        ):
            if t is None or a is None:
                row[key], reason = None, f"no {label} data" + (" for anchor" if a is None else "")
            else:
                row[key], reason = bd((anchor.bpp, a), (curve.bpp, t), what)
            if reason and f"{label}: {reason}" not in notes:
                notes.append(f"{label}: {reason}")
        if interval is None:
            row["rd_auc"], reason = None, "no common bpp interval"
        elif curve.psnr is None:
            row["rd_auc"], reason = None, "no PSNR data"
        else:
            row["rd_auc"], reason = rd_auc(curve, *interval)
        if reason:
            notes.append(f"RD-AUC: {reason}")
        for r in RATES:
            row[f"psnr_at_{r:g}"] = None if curve.psnr is None else psnr_at(curve, r)
        row["note"] = "; ".join(notes)
        rows.append(row)
    return rows


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_tables(rows: list[dict[str, Any]], anchor: str, interval: tuple[float, float] | None,
                 out_dir: Path) -> tuple[Path, Path]:
    """Write bd.csv (full precision, "n/a" where missing) and bd.md (rounded, with definitions)."""
    csv_path, md_path = out_dir / "bd.csv", out_dir / "bd.md"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for row in rows:
            w.writerow(["n/a" if row[c] is None else row[c] for c in COLUMNS])
    span = f"{interval[0]:.3f}-{interval[1]:.3f} bpp" if interval else "none (the codecs share no bpp range)"
    lines = [
        f"# Rate-distortion summary (anchor: {anchor})",
        "",
        "| " + " | ".join(HEADERS[c] for c in COLUMNS) + " |",
        "|" + "|".join("---" if c in ("name", "kind", "note") else "---:" for c in COLUMNS) + "|",
    ]
    for row in rows:
        cells = [_cell(row[c], 3 if c == "bd_psnr" or c.startswith("psnr_at") else 2) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"- BD-rate: average bitrate difference to {anchor} at equal quality (negative: fewer bits). "
        "BD-PSNR: average PSNR difference at equal rate (positive: better). Bjontegaard deltas with "
        f"Akima interpolation over log rate, integrated where the two curves overlap; "
        f"a curve needs {MIN_POINTS} usable points.",
        "- BD-rate MS-SSIM uses MS-SSIM in dB, -10 log10(1 - MS-SSIM), as quality.",
        f"- RD-AUC: mean PSNR (dB) over {span}, the bpp interval all codecs of this run cover: the area "
        "under the piecewise-linear PSNR-vs-bpp curve divided by the interval's width. Higher is better.",
        "- PSNR @r bpp: read off the same piecewise-linear curve; n/a outside a curve's measured range.",
        "- Points with more bits and no better quality than a cheaper point are left out of all numbers.",
    ]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path


def write_report(anchor: Curve, ours: list[Curve], references: list[Curve], out_dir: Path
           ) -> tuple[list[dict[str, Any]], tuple[float, float] | None, tuple[Path, Path]]:
    """The BD table of our curves and published ones against `anchor`, RD-AUC over the bpp interval all of
    ours cover, written as bd.csv and bd.md: (rows, interval, files)."""
    interval = common_interval(ours)
    rows = bd_table(anchor, [(c, "ours") for c in ours] + [(c, "reference") for c in references], interval)
    return rows, interval, write_tables(rows, anchor.name, interval, out_dir)
