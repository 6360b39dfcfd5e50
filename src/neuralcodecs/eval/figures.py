"""The RD figure: PSNR vs bpp and MS-SSIM (dB) vs bpp, a row for learned and one for classical codecs, our
codecs solid, published curves dashed.

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

from .bd import write_report
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


def families(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(learned, classical) among our curves' names: learned where the registered codec says so (Codec.learned);
    a curve named "CODEC key=value ..." (a codec at other settings, e.g. "minnen2018 refine=40") is CODEC's;
    anything else (classical codecs, names not registered here) is drawn with the classical ones."""
    from ..registry import get_entry, list_codecs

    known = set(list_codecs())
    learned = [n for n in names if n.split(" ")[0] in known and get_entry(n.split(" ")[0]).cls.learned]
    return learned, [n for n in names if n not in learned]


# 20 colours x 4 markers: every curve of a figure gets its own pair (matplotlib's default cycle of 10 colours
# gave avif and jpegxl, balle2017 and theis2017 the same colour)
_COLORS = [f"tab:{c}" for c in ("blue", "red", "green", "orange", "purple", "brown", "pink", "cyan", "olive",
                                "gray")] + ["#393b79", "#ad494a", "#637939", "#e7ba52", "#7b4173", "#3182bd",
                                            "#e6550d", "#31a354", "#756bb1", "#17becf"]
_MARKERS = ("o", "s", "^", "D")


def draw_rd(ours: Sequence[Curve], references: Sequence[Curve], out_png: str | os.PathLike,
            title: str | None = None, anchor: Curve | None = None) -> None:
    """Write the RD figure to out_png: PSNR and MS-SSIM (columns) for learned and for classical codecs (rows);
    published curves (dashed) with the learned ones, and the BD-rate anchor, if any, drawn thin in the learned
    row too, for orientation."""
    ours, references = list(ours), list(references)
    xmax = _visible_range(ours or references)
    learned, classical = families([c.name for c in ours])
    by_name = {c.name: c for c in ours}
    rows = [("learned codecs", [by_name[n] for n in learned], references,
             [anchor] if anchor is not None and anchor.name not in learned else []),
            ("classical codecs", [by_name[n] for n in classical], [], [])]
    rows = [r for r in rows if r[1] or r[2]] or rows[:1]
    fig = Figure(figsize=(15, 5.2 * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for (row_title, solid, dashed, thin), row_axes in zip(rows, axes):
        # colours counted per row, so the curves that share panels get the most distinct ones
        style = {c.name: (_COLORS[i % len(_COLORS)], _MARKERS[(i // len(_COLORS)) % len(_MARKERS)])
                 for i, c in enumerate(solid + dashed)}
        handles: dict[str, object] = {}
        for ax, panel, ylabel in ((row_axes[0], "psnr", "PSNR RGB (dB)"),
                                  (row_axes[1], "ms-ssim", "MS-SSIM RGB (dB)")):
            ys_visible: list[np.ndarray] = []
            for curve, kind in [(c, "ours") for c in solid] + [(c, "ref") for c in dashed] + [(c, "thin") for c in thin]:
                s = _series(curve, panel)
                if s is None:
                    continue
                x, y = s
                color, marker = style.get(curve.name, ("black", None))
                label = curve.name
                if len(x) == 1 and x[0] > xmax:
                    label += f" ({x[0]:.1f} bpp, off scale)"
                elif len(x) == 1:
                    label += " (single point)"
                if kind == "ours":
                    (line,) = ax.plot(x, y, "-", marker=marker, color=color, lw=1.8, ms=4, label=label, zorder=3)
                elif kind == "thin":
                    label += " (anchor)"
                    (line,) = ax.plot(x, y, ":", color="black", lw=1.2, label=label, zorder=2)
                else:
                    (line,) = ax.plot(x, y, "--", color=color, lw=1.2, alpha=0.85, label=label, zorder=2,
                                      marker=marker if len(x) < 25 else None, ms=3)
                handles.setdefault(label, line)
                if kind != "thin":
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
            ax.set_title(f"{row_title}: " + ("PSNR vs rate" if panel == "psnr" else
                                             "MS-SSIM vs rate (-10 log10(1 - MS-SSIM))"), fontsize=10)
        if handles:
            row_axes[1].legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(1.02, 0.5),
                               fontsize=8, title="solid: ours, dashed: published" if dashed else None,
                               title_fontsize=8)
    if title:
        fig.suptitle(title)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)


def plot(jsons: Sequence[str | os.PathLike], out_png: str | os.PathLike,
         references: Sequence[str | os.PathLike] = (), anchor: str | None = None) -> list[Path]:
    """Redraw rd.png from saved per-codec JSONs (ours) and published curve files (references); with an
    anchor (the name of one of ours, or a curve file) also write bd.csv and bd.md beside it."""
    ours, refs = load_references(jsons), load_references(references)
    anchor_curve = None if anchor is None else next((c for c in ours if c.name == anchor), None)
    if anchor is not None and anchor_curve is None:
        if not Path(anchor).is_file():
            raise ValueError(f"anchor {anchor!r} is neither one of the curves given nor a curve file")
        anchor_curve = load_curve(anchor)
    draw_rd(ours, refs, out_png, anchor=anchor_curve)
    if anchor_curve is None:
        return [Path(out_png)]
    return [Path(out_png), *write_report(anchor_curve, ours, refs, Path(out_png).parent)[2]]
