"""`neuralcodecs report RESULTS_DIR [...] --out DIR`: one self-contained HTML page of evaluations.

    RESULTS_DIR/<codec>.json      curves `eval` wrote      -> interactive RD charts (PSNR, MS-SSIM), per codec
    published curve files (--reference)                    -> dashed curves in the same charts
    both, against the anchor                               -> the BD table
    RESULTS_DIR/crops/<image>/    what `eval --crops` kept -> a side-by-side viewer: two codecs at matched
                                                              bpp, a split slider, zoom

Everything (data, decoded crops as PNG data URIs, script, style) is inside index.html: no server, no network,
open the file. The script draws SVG itself, so the page needs no library.
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

from ..image import write_atomic
from ..metrics import ms_ssim_from_db
from .bd import bd_table, common_interval
from .figures import families
from .references import Curve, load_references, make_curve
from .sweep import CROP, json_safe



def _finite(values: Sequence[Any]) -> list[float | None]:
    return [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]


def _our_curves(results: Path) -> list[dict[str, Any]]:
    """The curves `eval` wrote (meta.source == neuralcodecs), with whether the codec is a learned one."""
    curves = []
    for path in sorted(results.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(doc, dict) or doc.get("meta", {}).get("source") != "neuralcodecs" or "results" not in doc:
            continue
        r = doc["results"]
        curves.append({"name": doc["name"], "quality": [str(q) for q in r["quality"]], "bpp": _finite(r["bpp"]),
                       "psnr": _finite(r["psnr-rgb"]), "msssim": _finite(r.get("ms-ssim-db", [None] * len(r["bpp"])))})
    learned, _ = families([c["name"] for c in curves])
    return [{**c, "kind": "learned" if c["name"] in learned else "classical"} for c in curves]


def _reference_curves(references: Sequence[str | Path]) -> list[dict[str, Any]]:
    out = []
    for c in load_references(references):
        n = len(c.bpp)
        out.append({"name": c.name, "kind": "published", "quality": [""] * n, "bpp": _finite(c.bpp),
                    "psnr": _finite(c.psnr if c.psnr is not None else [None] * n),
                    "msssim": _finite(c.ms_ssim_db if c.ms_ssim_db is not None else [None] * n)})
    return out


def _as_curve(d: dict[str, Any]) -> Curve:
    nan = float("nan")
    ms = [nan if v is None else ms_ssim_from_db(v) for v in d["msssim"]]
    return make_curve(d["name"], [nan if v is None else v for v in d["bpp"]],
                      [nan if v is None else v for v in d["psnr"]], ms)


def _crops(results: Path) -> dict[str, Any]:
    """{image: {"original": data URI, "width", "height", "codecs": {codec: [{quality, bpp, psnr, src}, ...] by
    bpp}}} from RESULTS/crops/<image>/<codec>/<quality>.png and the .json beside each (eval.sweep.keep_crop)."""
    from ..image import load_image

    root = results / "crops"
    out: dict[str, Any] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        original = folder / "original.png"
        if not original.exists():
            continue
        codecs: dict[str, list] = {}
        for codec_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            for png in codec_dir.glob("*.png"):
                sidecar = png.with_suffix(".json")
                if sidecar.exists():
                    m = json.loads(sidecar.read_text(encoding="utf-8"))
                    codecs.setdefault(codec_dir.name, []).append(
                        {"quality": png.stem, "bpp": m["bpp"], "psnr": m["psnr"], "src": _data_uri(png)})
        for v in codecs.values():
            v.sort(key=lambda e: e["bpp"])
        if codecs:
            h, w = load_image(original).shape[:2]
            out[folder.name] = {"original": _data_uri(original), "width": w, "height": h, "codecs": codecs}
    return out


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def build_report(results: Sequence[str | Path], out: str | Path, references: Sequence[str | Path] = (),
                 anchor: str = "jpeg", title: str | None = None, force: bool = False) -> Path:
    """Write OUT/index.html from `eval` results folders (curves and crops of all of them; a codec's curve from
    the first folder that has one); returns its path."""
    folders, out = [Path(r) for r in results], Path(out)
    for f in folders:
        if not f.is_dir():
            raise FileNotFoundError(f"{f}: no such folder")
    ours, crops = [], {}
    for f in folders:
        ours += [c for c in _our_curves(f) if c["name"] not in {o["name"] for o in ours}]
        for image, entry in _crops(f).items():
            crops.setdefault(image, entry)["codecs"].update(
                {k: v for k, v in entry["codecs"].items() if k not in crops[image]["codecs"]})
    if not ours and not crops:
        raise ValueError(f"{', '.join(map(str, folders))}: no curves (<codec>.json) or crops written by "
                         "`neuralcodecs eval`")
    refs = _reference_curves(references)
    page = out / "index.html"
    if page.exists() and not force:  # refused before the work (write_atomic checks again as it writes)
        raise FileExistsError(f"{page} exists (use --force to overwrite)")
    bd_rows: list[dict[str, Any]] = []
    anchor_doc = next((c for c in ours if c["name"] == anchor), None)
    if anchor_doc is not None:
        curves = [_as_curve(c) for c in ours]
        bd_rows = bd_table(_as_curve(anchor_doc), [(c, "ours") for c in curves] +
                           [(_as_curve(r), "reference") for r in refs], common_interval(curves))
    data = {"title": title or f"{folders[0].name}: rate-distortion", "anchor": anchor if anchor_doc else None,
            "curves": ours + refs, "bd": json_safe(bd_rows),
            "crops": crops}
    # "</" cannot appear inside the JSON script block, or the browser would end the block there
    blob = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    text = _PAGE.replace("__TITLE__", html.escape(data["title"])).replace("__DATA__", blob)
    write_atomic(page, text.encode("utf-8"), force=force)
    return page


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
svg.chart { border: 1px solid #ddd; background: #fff; }
svg.chart text { font-size: 11px; fill: #333; }
.toggles { display: flex; flex-wrap: wrap; gap: 2em; font-size: 12px; margin: .5em 0; }
.toggles > div { columns: 2; column-gap: 1.5em; }
.toggles label { display: block; white-space: nowrap; }
.toggles .group { font-weight: bold; margin-top: .3em; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td:first-child, th:first-child, td:nth-child(2), td:last-child { text-align: left; }
.viewer { display: flex; gap: 1.5em; align-items: flex-start; flex-wrap: wrap; }
.stage { position: relative; display: inline-block; overflow: auto; border: 1px solid #ccc; max-width: 820px; max-height: 820px; }
.stage img { display: block; image-rendering: pixelated; }
.stage .top { position: absolute; left: 0; top: 0; }
.stage .line { position: absolute; top: 0; bottom: 0; width: 1px; background: #fff; box-shadow: 0 0 2px #000; }
.controls label { display: block; margin: .35em 0; }
.caption { font-size: 12px; color: #555; }
#errors { color: #b00; }
</style></head>
<body>
<h1 id="title"></h1>
<div id="errors"></div>
<h2>Rate-distortion</h2>
<div class="charts"><svg id="chart-psnr" class="chart" width="560" height="400"></svg>
<svg id="chart-msssim" class="chart" width="560" height="400"></svg></div>
<div id="toggles" class="toggles"></div>
<h2>BD table</h2><div id="bd"></div>
<h2>Decoded crops side by side</h2><div id="viewer"></div>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
window.addEventListener("error", function (e) {
  document.body.dataset.errors = String(Number(document.body.dataset.errors || 0) + 1);
  document.getElementById("errors").textContent += "script error: " + e.message + "\n";
});
const DATA = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
// 20 distinct colours and 6 markers: no two curves share both
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#e7ba52", "#7b4173", "#3182bd", "#e6550d",
  "#31a354", "#756bb1", "#636363"];
const MARKERS = ["circle", "square", "triangle", "diamond", "cross", "star"];
const visible = {};
DATA.curves.forEach(function (c, i) {
  c.color = COLORS[i % COLORS.length];
  c.marker = MARKERS[Math.floor(i / COLORS.length) % MARKERS.length];
  if (c.kind === "published") { c.marker = MARKERS[i % MARKERS.length]; }
  visible[c.name] = true;
});

function el(tag, attrs, parent, text) {
  const e = tag === "svg" || ["line", "path", "text", "g", "circle", "rect", "polygon", "title"].includes(tag)
    ? document.createElementNS(NS, tag) : document.createElement(tag);
  for (const k in attrs || {}) { e.setAttribute(k, attrs[k]); }
  if (text !== undefined) { e.textContent = text; }
  if (parent) { parent.appendChild(e); }
  return e;
}

function ticks(lo, hi, n) {
  const step0 = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map(function (m) { return m * mag; }).find(function (s) { return s >= step0; });
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) { out.push(+t.toFixed(6)); }
  return out;
}

function marker(g, shape, x, y, color) {
  const r = 3.5;
  if (shape === "circle") { el("circle", {cx: x, cy: y, r: r, fill: color}, g); return; }
  if (shape === "square") { el("rect", {x: x - r, y: y - r, width: 2 * r, height: 2 * r, fill: color}, g); return; }
  const pts = {triangle: [[0, -r - 1], [r + 1, r], [-r - 1, r]], diamond: [[0, -r - 1], [r + 1, 0], [0, r + 1], [-r - 1, 0]],
    cross: [[-r, -1], [-1, -1], [-1, -r], [1, -r], [1, -1], [r, -1], [r, 1], [1, 1], [1, r], [-1, r], [-1, 1], [-r, 1]],
    star: [[0, -r - 2], [1.5, -1.5], [r + 2, 0], [1.5, 1.5], [0, r + 2], [-1.5, 1.5], [-r - 2, 0], [-1.5, -1.5]]}[shape];
  el("polygon", {points: pts.map(function (p) { return (x + p[0]) + "," + (y + p[1]); }).join(" "), fill: color}, g);
}

function drawChart(svg, key, label) {
  while (svg.firstChild) { svg.removeChild(svg.firstChild); }
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height"), L = 50, R = 10, T = 24, B = 40;
  const shown = DATA.curves.filter(function (c) { return visible[c.name]; });
  const pts = [];
  shown.forEach(function (c) { c.bpp.forEach(function (b, i) {
    if (b !== null && c[key][i] !== null && b <= 3) { pts.push([b, c[key][i]]); } }); });
  el("text", {x: L, y: 15}, svg, label + " vs bits per pixel");
  if (!pts.length) { return; }
  const x0 = 0, x1 = Math.max(1, Math.max.apply(null, pts.map(function (p) { return p[0]; })));
  let y0 = Math.min.apply(null, pts.map(function (p) { return p[1]; }));
  let y1 = Math.max.apply(null, pts.map(function (p) { return p[1]; }));
  if (y1 - y0 < 1) { y0 -= 0.5; y1 += 0.5; }
  const sx = function (v) { return L + (v - x0) / (x1 - x0) * (W - L - R); };
  const sy = function (v) { return H - B - (v - y0) / (y1 - y0) * (H - T - B); };
  const axes = el("g", {"class": "axes"}, svg);
  ticks(x0, x1, 6).forEach(function (t) {
    el("line", {x1: sx(t), x2: sx(t), y1: T, y2: H - B, stroke: "#eee"}, axes);
    el("text", {x: sx(t), y: H - B + 14, "text-anchor": "middle"}, axes, String(t));
  });
  ticks(y0, y1, 6).forEach(function (t) {
    el("line", {x1: L, x2: W - R, y1: sy(t), y2: sy(t), stroke: "#eee"}, axes);
    el("text", {x: L - 4, y: sy(t) + 4, "text-anchor": "end"}, axes, String(t));
  });
  el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle"}, axes, "bpp");
  el("text", {x: 12, y: (T + H - B) / 2, transform: "rotate(-90 12 " + (T + H - B) / 2 + ")", "text-anchor": "middle"},
     axes, label + " (dB)");
  shown.forEach(function (c) {
    const p = [];
    c.bpp.forEach(function (b, i) { if (b !== null && c[key][i] !== null && b <= x1) { p.push([b, c[key][i], c.quality[i]]); } });
    if (!p.length) { return; }
    p.sort(function (a, b) { return a[0] - b[0]; });
    const g = el("g", {"class": "curve", "data-codec": c.name}, svg);
    el("title", {}, g, c.name);
    el("path", {d: p.map(function (q, i) { return (i ? "L" : "M") + sx(q[0]).toFixed(1) + " " + sy(q[1]).toFixed(1); }).join(" "),
      fill: "none", stroke: c.color, "stroke-width": c.kind === "published" ? 1.2 : 1.8,
      "stroke-dasharray": c.kind === "published" ? "5 3" : "none"}, g);
    p.forEach(function (q) {
      const m = el("g", {}, g);
      marker(m, c.marker, sx(q[0]), sy(q[1]), c.color);
      el("title", {}, m, c.name + (q[2] ? " q=" + q[2] : "") + ": " + q[0].toFixed(3) + " bpp, " + q[1].toFixed(2) + " dB");
    });
  });
}

function drawCharts() {
  drawChart(document.getElementById("chart-psnr"), "psnr", "PSNR RGB");
  drawChart(document.getElementById("chart-msssim"), "msssim", "MS-SSIM RGB, -10 log10(1 - MS-SSIM)");
}

function toggles() {
  const box = document.getElementById("toggles");
  ["learned", "classical", "published"].forEach(function (kind) {
    const members = DATA.curves.filter(function (c) { return c.kind === kind; });
    if (!members.length) { return; }
    const group = el("div", {}, box);
    el("div", {"class": "group"}, group, kind === "published" ? "published (dashed)" : kind);
    members.forEach(function (c) {
      const lab = el("label", {}, group);
      const cb = el("input", {type: "checkbox", "data-codec": c.name}, lab);
      cb.checked = true;
      cb.addEventListener("change", function () { visible[c.name] = cb.checked; drawCharts(); });
      el("span", {style: "color:" + c.color}, lab, " \u25A0 " + c.name);
    });
  });
}

function bdTable() {
  const box = document.getElementById("bd");
  if (!DATA.bd.length) { box.textContent = "no anchor among the curves"; return; }
  const cols = [["name", "codec"], ["kind", "kind"], ["bd_rate_psnr", "BD-rate PSNR (%)"], ["bd_psnr", "BD-PSNR (dB)"],
    ["bd_rate_msssim", "BD-rate MS-SSIM (%)"], ["note", "note"]];
  el("p", {"class": "caption"}, box, "against " + DATA.anchor + "; negative BD-rate: fewer bits at equal quality");
  const t = el("table", {id: "bd-table"}, box), head = el("tr", {}, el("thead", {}, t));
  cols.forEach(function (c) { el("th", {}, head, c[1]); });
  const body = el("tbody", {}, t);
  DATA.bd.slice().sort(function (a, b) { return (a.bd_rate_psnr === null) - (b.bd_rate_psnr === null) || a.bd_rate_psnr - b.bd_rate_psnr; })
    .forEach(function (r) {
      const tr = el("tr", {}, body);
      cols.forEach(function (c) {
        const v = r[c[0]];
        el("td", {}, tr, typeof v === "number" ? v.toFixed(c[0] === "bd_psnr" ? 3 : 2) : (v === null || v === undefined ? "" : String(v)));
      });
    });
}

function nearest(list, bpp) {
  return list.reduce(function (a, b) { return Math.abs(b.bpp - bpp) < Math.abs(a.bpp - bpp) ? b : a; });
}

function viewer() {
  const box = document.getElementById("viewer"), images = Object.keys(DATA.crops);
  if (!images.length) { box.textContent = "no decoded crops: run eval with --crops IMAGE to keep some"; return; }
  const wrap = el("div", {"class": "viewer"}, box), controls = el("div", {"class": "controls"}, wrap);
  const stageBox = el("div", {}, wrap);
  function select(label, options, id) {
    const l = el("label", {}, controls, label + " ");
    const s = el("select", {id: id}, l);
    options.forEach(function (o) { el("option", {value: o}, s, o); });
    return s;
  }
  const imgSel = select("image", images, "view-image");
  const aSel = select("left", [], "view-a"), bSel = select("right", [], "view-b");
  const rateLab = el("label", {}, controls, "bpp ");
  const rate = el("input", {type: "range", id: "view-bpp", min: "0.05", max: "2", step: "0.01", value: "0.5"}, rateLab);
  const rateVal = el("span", {}, rateLab);
  const zoom = select("zoom", ["1", "2", "3", "4"], "view-zoom");
  const splitLab = el("label", {}, controls, "split ");
  const split = el("input", {type: "range", id: "view-split", min: "0", max: "100", value: "50"}, splitLab);
  const flip = el("button", {type: "button", id: "view-flip"}, controls, "flip left/right");
  const stage = el("div", {"class": "stage", id: "view-stage"}, stageBox);
  const under = el("img", {alt: "right", id: "view-under"}, stage), over = el("img", {alt: "left", "class": "top", id: "view-over"}, stage);
  const line = el("div", {"class": "line"}, stage);
  const caption = el("p", {"class": "caption", id: "view-caption"}, stageBox);
  function fillCodecs() {
    const names = ["original"].concat(Object.keys(DATA.crops[imgSel.value].codecs));
    [aSel, bSel].forEach(function (s, k) {
      const keep = s.value;
      while (s.firstChild) { s.removeChild(s.firstChild); }
      names.forEach(function (n) { el("option", {value: n}, s, n); });
      s.value = names.includes(keep) ? keep : names[Math.min(k + 1, names.length - 1)];
    });
  }
  function pick(name) {
    const crop = DATA.crops[imgSel.value];
    if (name === "original") { return {src: crop.original, text: "original"}; }
    const e = nearest(crop.codecs[name], +rate.value);
    const psnr = e.psnr === null ? "lossless" : e.psnr.toFixed(2) + " dB";
    return {src: e.src, text: name + " q=" + e.quality + ": " + e.bpp.toFixed(3) + " bpp, " + psnr};
  }
  function render() {
    const a = pick(aSel.value), b = pick(bSel.value), z = +zoom.value;
    [[over, a], [under, b]].forEach(function (pair) {
      const im = pair[0];
      im.dataset.loaded = "0";
      im.onload = function () { im.dataset.loaded = String(im.naturalWidth); };
      im.src = pair[1].src;
    });
    const crop = DATA.crops[imgSel.value];
    [over, under].forEach(function (im) { im.style.width = (z * crop.width) + "px"; im.style.height = (z * crop.height) + "px"; });
    over.style.clipPath = "inset(0 " + (100 - +split.value) + "% 0 0)";
    line.style.left = (z * crop.width * +split.value / 100) + "px";
    rateVal.textContent = (+rate.value).toFixed(2);
    caption.textContent = "left: " + a.text + " | right: " + b.text;
  }
  imgSel.addEventListener("change", function () { fillCodecs(); render(); });
  [aSel, bSel, rate, zoom, split].forEach(function (c) { c.addEventListener("input", render); c.addEventListener("change", render); });
  flip.addEventListener("click", function () { const t = aSel.value; aSel.value = bSel.value; bSel.value = t; render(); });
  zoom.value = "2";
  fillCodecs(); render();
}

document.getElementById("title").textContent = DATA.title;
toggles(); drawCharts(); bdTable(); viewer();
document.body.dataset.ready = "1";
</script>
</body></html>
"""
