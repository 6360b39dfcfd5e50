"""Rate-distortion curves: one small type, and one loader for every format of published curve we compare with.

Formats read by `load_curve` (see ../shared/reference/README.md):
  compressai JSON   {"name", "description", "results": {"bpp", "psnr-rgb", "ms-ssim-rgb", ...}}; our own
                    per-codec JSONs use the same layout. Some paper curves carry only one metric, or
                    MS-SSIM in dB only ("ms-ssim-db-rgb").
  COIN JSON         the same shape with keys "psnr" and "bpp", written with trailing commas (not strict JSON).
  TCM JSON          "results" holds one {"bpp", "psnr-rgb"} dict per model size ("large", "middle", "small").
  tensorflow-compression text   '#' comment lines, then "bpp, value" rows. The comment (or the folder,
                    PSNR_sRGB_RGB / MS-SSIM_sRGB_RGB) says the metric; MS-SSIM is raw (0..1), not dB.
                    The same method's file in the sibling folder is merged in when its rates match.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..metrics import ms_ssim_db, ms_ssim_from_db


@dataclass(frozen=True, eq=False)
class Curve:
    """A rate-distortion curve, sorted by bpp. A metric the source does not report is None; a point
    the source left empty (null) is NaN."""

    name: str
    bpp: np.ndarray
    psnr: np.ndarray | None  # dB, on RGB (a tensorflow-compression "_Y" file: on luma, and named so)
    ms_ssim: np.ndarray | None  # raw MS-SSIM in [0, 1]; plots and BD use ms_ssim_db

    @property
    def ms_ssim_db(self) -> np.ndarray | None:
        """-10 log10(1 - MS-SSIM): the scale papers plot MS-SSIM on (inf for a perfect 1.0)."""
        if self.ms_ssim is None:
            return None
        return np.array([ms_ssim_db(v) for v in self.ms_ssim], dtype=float)

    def __len__(self) -> int:
        return len(self.bpp)


def make_curve(name: str, bpp: Any, psnr: Any = None, ms_ssim: Any = None) -> Curve:
    """Build a Curve from sequences (None entries become NaN), checking lengths and sorting by bpp."""
    rate = _floats(bpp)
    metrics = [None if m is None else _floats(m) for m in (psnr, ms_ssim)]
    for label, m in zip(("psnr", "ms-ssim"), metrics):
        if m is not None and len(m) != len(rate):
            raise ValueError(f"{name}: {len(rate)} bpp values but {len(m)} {label} values")
    # A stable sort keeps the source's order among equal rates.
    order = np.argsort(rate, kind="stable")
    psnr_, ms_ = (None if m is None else m[order] for m in metrics)
    return Curve(name, rate[order], psnr_, ms_)


def load_curve(path: str | os.PathLike, variant: str | None = None) -> Curve:
    """Load one curve from any supported file. For files with several models (TCM's sizes), `variant`
    picks one; by default the first listed (for TCM, "large", the paper's headline model)."""
    curves = load_curves(path)
    if variant is None:
        return curves[0]
    for c in curves:
        if c.name.endswith(f"[{variant}]"):
            return c
    raise ValueError(f"{path}: no variant {variant!r}; it has {[c.name for c in curves]}")


def load_curves(path: str | os.PathLike) -> list[Curve]:
    """Every curve in a file: one for most formats, one per model variant for TCM-style files."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        return [_load_tfc(path)]
    return _load_json(path)


def load_references(paths: Sequence[str | os.PathLike]) -> list[Curve]:
    """Load one curve per file, making names unique: published files reuse names (tensorflow-compression's
    two "Minnen 2018 (NeurIPS)" models, CompressAI's cpu/cuda runs), and a legend or table needs them apart."""
    curves = [load_curve(p) for p in paths]
    counts: dict[str, int] = {}
    for c in curves:
        counts[c.name] = counts.get(c.name, 0) + 1
    return [replace(c, name=f"{c.name} [{Path(p).stem}]") if counts[c.name] > 1 else c
            for c, p in zip(curves, paths)]


# -- JSON (compressai, COIN, TCM, ours) ------------------------------------------------------------

_BPP_KEYS = ("bpp",)
_PSNR_KEYS = ("psnr-rgb", "psnr", "psnr_rgb")
_MS_SSIM_KEYS = ("ms-ssim-rgb", "ms-ssim", "ms_ssim")
_MS_SSIM_DB_KEYS = ("ms-ssim-db-rgb", "ms-ssim-db", "ms_ssim_db")


def _read_json(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # COIN's files have trailing commas ("1.209,\n ]"). Dropping a comma that only whitespace separates
        # from a closing bracket fixes exactly that; strict files never reach this line.
        try:
            return json.loads(re.sub(r",(\s*[\]}])", r"\1", text))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a JSON curve file ({e})") from None


def _load_json(path: Path) -> list[Curve]:
    doc = _read_json(path)
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict):
        raise ValueError(f"{path}: no 'results' object; not a curve file")
    name = str(doc.get("name") or path.stem)
    if any(k in results for k in _BPP_KEYS):
        return [_curve_from_results(name, results, path)]
    # No rates at the top: one dict per model variant (TCM's "large", "middle", "small").
    variants = {k: v for k, v in results.items() if isinstance(v, dict) and "bpp" in v}
    if not variants:
        raise ValueError(f"{path}: 'results' has no 'bpp' values")
    return [_curve_from_results(f"{name} [{k}]", v, path) for k, v in variants.items()]


def _first(results: dict, keys: tuple[str, ...]) -> list | None:
    for k in keys:
        if k in results:
            return results[k]
    return None


def _curve_from_results(name: str, results: dict, path: Path) -> Curve:
    psnr = _first(results, _PSNR_KEYS)
    ms_ssim = _first(results, _MS_SSIM_KEYS)
    if ms_ssim is None:
        db = _first(results, _MS_SSIM_DB_KEYS)
        if db is not None:  # back to raw MS-SSIM so every Curve holds the same quantity
            ms_ssim = [None if v is None else ms_ssim_from_db(v) for v in db]
    if psnr is None and ms_ssim is None:
        raise ValueError(f"{path}: neither PSNR nor MS-SSIM in 'results' (keys: {sorted(results)})")
    try:
        return make_curve(name, _first(results, _BPP_KEYS), psnr, ms_ssim)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


# -- tensorflow-compression text -------------------------------------------------------------------

def _read_tfc(path: Path) -> tuple[str | None, str | None, np.ndarray, np.ndarray]:
    """(method name, metric label, bpp, value) of one text file."""
    name = metric = None
    rows: list[tuple[float, float]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        s = line.strip()
        if s.startswith("#"):
            m = re.search(r'data for "(.+?)"', s)
            name = name or (m.group(1) if m else None)
            m = re.search(r"second column contains (\S+) values", s)
            metric = metric or (m.group(1) if m else None)
            continue
        if not s:
            continue
        parts = [p for p in re.split(r"[,\s]+", s) if p]
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{n}: expected 'bpp, value', got {s!r}") from None
    if not rows:
        raise ValueError(f"{path}: no data rows")
    data = np.array(rows, dtype=np.float64)
    return name, metric, data[:, 0], data[:, 1]


def _load_tfc(path: Path) -> Curve:
    name, metric, bpp, values = _read_tfc(path)
    # The comment says e.g. "PSNR/sRGB/R'G'B'"; the folder (PSNR_sRGB_RGB) says the same when it is missing.
    metric = metric or path.parent.name.replace("_", "/")
    is_psnr = metric.upper().startswith("PSNR")
    luma = metric.endswith("Y'") or metric.endswith("/Y")
    other_dir = path.parent.name.replace("PSNR", "MS-SSIM", 1) if is_psnr else path.parent.name.replace("MS-SSIM", "PSNR", 1)
    other_file = path.parent.parent / other_dir / path.name
    other = None
    if other_file != path and other_file.is_file():
        _, _, other_bpp, other_values = _read_tfc(other_file)
        # Merge only when both files list the same operating points; otherwise the pairs would be made up.
        if other_bpp.shape == bpp.shape and np.allclose(other_bpp, bpp):
            other = other_values
    psnr, ms_ssim = (values, other) if is_psnr else (other, values)
    label = (name or path.stem) + (" (Y)" if luma else "")
    return make_curve(label, bpp, psnr, ms_ssim)


def _floats(values: Any) -> np.ndarray:
    if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ValueError(f"expected a list of numbers, got {type(values).__name__}")
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
