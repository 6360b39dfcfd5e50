"""The RD figure: PSNR vs bpp and MS-SSIM (dB) vs bpp, our codecs solid, published curves dashed.

Drawn on a bare matplotlib Figure with the Agg canvas, so it works headless and never touches pyplot's
global backend of the program that imports us.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .bd import report
from .references import Curve, load_curve, load_references

MIN_XMAX = 2.5  # bpp: the range where learned and classical codecs are usually compared


def _visible_range(curves: list[Curve]) -> float:
    """Right edge of the x axis: at least MIN_XMAX, and wide enough for every point of our real curves.
    Single points (lossless png at 10+ bpp) do not stretch it; their legend entry gives their bpp."""
    rates = [c.bpp[np.isfinite(c.bpp)] for c in curves if np.isfinite(c.bpp).sum() >= 2]
    top = max([MIN_XMAX] + [float(r.max()) for r in rates if len(r)])
    return top * 1.04


def _series(curve: Curve, panel: str) -> tuple[np.ndarray, np.ndarray] | None:
    y = curve.psnr if panel == "psnr" else curve.ms_ssim_db
    if y is None:
        return None
    ok = np.isfinite(curve.bpp) & np.isfinite(y)
    return (curve.bpp[ok], y[ok]) if ok.any() else None


def draw_rd(ours: Sequence[Curve], references: Sequence[Curve], out_png: str | os.PathLike,
            title: str | None = None) -> None:
    """Write the two-panel RD figure to out_png."""
    ours, references = list(ours), list(references)
    xmax = _visible_range(ours or references)
    fig = Figure(figsize=(14, 6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    styles = [(c, "ours", f"C{i % 10}") for i, c in enumerate(ours)]
    # A separate palette for references, so a reference never takes the colour of one of our codecs.
    ref_colors = [f"tab:{n}" for n in ("gray", "olive", "cyan", "pink", "brown", "purple", "red", "green",
                                        "blue", "orange")]
    styles += [(c, "ref", ref_colors[i % len(ref_colors)]) for i, c in enumerate(references)]
    handles: dict[str, object] = {}
    for ax, panel, ylabel in ((axes[0], "psnr", "PSNR RGB (dB)"), (axes[1], "ms-ssim", "MS-SSIM RGB (dB)")):
        ys_visible: list[np.ndarray] = []
        for curve, kind, color in styles:
            s = _series(curve, panel)
            if s is None:
                continue
            x, y = s
            label = curve.name
            if len(x) == 1 and x[0] > xmax:
                label += f" ({x[0]:.1f} bpp, off scale)"
            elif len(x) == 1:
                label += " (single point)"
            if kind == "ours":
                (line,) = ax.plot(x, y, "-o", color=color, lw=1.8, ms=4, label=label, zorder=3)
            else:
                (line,) = ax.plot(x, y, "--", color=color, lw=1.2, alpha=0.85, label=label, zorder=2,
                                  marker="." if len(x) < 25 else None)
            handles.setdefault(label, line)
            ys_visible.append(y[x <= xmax])
        ax.set_xlim(0, xmax)
        ys = np.concatenate(ys_visible) if ys_visible else np.empty(0)
        if len(ys):
            # Scale y to what is on screen; off-scale points (e.g. 9 bpp BPG at 53 dB) would squash the rest.
            lo, hi = float(ys.min()), float(ys.max())
            pad = max(0.5, 0.04 * (hi - lo))
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel("bits per pixel (bpp)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    axes[0].set_title("PSNR vs rate")
    axes[1].set_title("MS-SSIM vs rate (-10 log10(1 - MS-SSIM))")
    if title:
        fig.suptitle(title)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right center", fontsize=8,
                   title="solid: ours, dashed: published", title_fontsize=8)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)


def plot(jsons: Sequence[str | os.PathLike], out_png: str | os.PathLike,
         references: Sequence[str | os.PathLike] = (), anchor: str | None = None) -> list[Path]:
    """Redraw rd.png from saved per-codec JSONs (ours) and published curve files (references); with an
    anchor (the name of one of ours, or a curve file) also write bd.csv and bd.md beside it."""
    ours, refs = load_references(jsons), load_references(references)
    draw_rd(ours, refs, out_png)
    if anchor is None:
        return [Path(out_png)]
    anchor_curve = next((c for c in ours if c.name == anchor), None)
    if anchor_curve is None:
        if not Path(anchor).is_file():
            raise ValueError(f"anchor {anchor!r} is neither one of the curves given nor a curve file")
        anchor_curve = load_curve(anchor)
    return [Path(out_png), *report(anchor_curve, ours, refs, Path(out_png).parent)[2]]
