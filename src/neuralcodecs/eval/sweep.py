"""The one evaluation path: sweep codecs over their rate points on a folder of images.

Every (codec, quality, image) is a job: encode to a real file, decode that file with the top-level
`neuralcodecs.decode` (so the container and the codec's decoder are what is measured), then compute all
metrics against the original 8-bit image, with bpp from the file's length. Jobs are independent, so a
process pool runs them; results come back in job order, so the numbers never depend on `workers`
(only the timings do).

Each finished job is appended to OUT/jobs.jsonl as it lands. A sweep of a slow encoder (coconet fits
every image for minutes) outlasts a working session, so `resume=True` keeps the rows logged there for
the same (codec, quality, image, settings) and runs only the missing jobs.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .. import __version__
from ..codec import decode
from ..engine import one_thread_worker
from ..image import image_files, load_image
from ..metrics import all_metrics, ms_ssim_db
from ..registry import create_codec, get_entry, list_codecs
from .bd import write_report
from .figures import draw_rd
from .references import Curve, load_curve, load_references, make_curve

CROP = 256  # side of the decoded crops `eval --crops` keeps (the centre of the image)
METRICS = ("bpp", "psnr-rgb", "ssim-rgb", "ms-ssim-rgb", "ms-ssim-db", "psnr-hvs", "psnr-hvs-m")
TIMES = ("encoding_time", "decoding_time")
CSV_COLUMNS = ("codec", "quality", "image", "height", "width", "bytes") + METRICS + TIMES


@dataclass(frozen=True)
class Job:
    codec: str
    quality: Any
    image: str  # a path, not pixels: workers load their own images, so little is pickled
    settings: tuple = ()  # (key, value) pairs of codec settings besides quality
    crops: str = ""  # a folder: keep the centre of the decoded image there (crops/<image>/<codec>/<quality>.png)


def list_images(data: str | os.PathLike) -> list[Path]:
    """The image files of a folder, sorted by name (a single image file is also accepted)."""
    data = Path(data)
    if data.is_file():
        return [data]
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: no such folder")
    images = image_files(data)
    if not images:
        raise ValueError(f"{data}: no images")
    return images


# Per process: a learned codec loads its weights once per worker, not once per image.
_codecs: dict[tuple[str, str, str], Any] = {}


def _get_codec(name: str, quality: Any, settings: tuple, image: np.ndarray) -> Any:
    key = (name, repr(quality), repr(settings))
    if key not in _codecs:
        codec = create_codec(name, quality=quality, **dict(settings))
        # the first call pays for imports, library setup and the decoder cache, which would otherwise land
        # in the first image's timings
        codec.warm_up(image)
        _codecs[key] = codec
    return _codecs[key]


def run_job(job: Job) -> dict[str, Any]:
    """Encode, decode and measure one image at one rate point; one per_image.csv row."""
    image = load_image(job.image, alpha="flatten")  # RD is measured on what a viewer shows
    try:
        codec = _get_codec(job.codec, job.quality, job.settings, image)
        t0 = time.perf_counter()
        data = codec.encode(image)
        t1 = time.perf_counter()
        decoded = decode(data)
        t2 = time.perf_counter()
        metrics = all_metrics(image, decoded, len(data))
        if job.crops:
            keep_crop(Path(job.crops) / Path(job.image).stem, job.codec, job.quality, image, decoded,
                      {"bpp": metrics["bpp"], "psnr": metrics["psnr-rgb"]})  # (kept only when the job runs, not on --resume)
    except Exception as e:
        # Name the job: from a pool, a bare library error would not say which of thousands failed.
        raise RuntimeError(f"{job.codec} quality={job.quality!r} on {job.image}: {type(e).__name__}: {e}") from e
    return {"codec": job.codec, "quality": job.quality, "image": Path(job.image).name,
            "height": image.shape[0], "width": image.shape[1], "bytes": len(data),
            **{k: metrics[k] for k in METRICS}, "encoding_time": t1 - t0, "decoding_time": t2 - t1}


def _centre(image: np.ndarray) -> np.ndarray:

    h, w = image.shape[:2]
    top, left = max(0, (h - CROP) // 2), max(0, (w - CROP) // 2)
    return image[top:top + CROP, left:left + CROP]


def keep_crop(folder: Path, codec: str, quality: Any, image: np.ndarray, decoded: np.ndarray,
              measured: dict[str, float]) -> None:
    """The centre of the decoded image (and once, of the original) as lossless PNG, with what was measured on
    the whole image beside it (<quality>.json: bpp, psnr), for the report's viewer."""
    from ..image import save_image, write_atomic

    (folder / codec).mkdir(parents=True, exist_ok=True)
    if not (folder / "original.png").exists():
        save_image(folder / "original.png", _centre(image), force=True)
    save_image(folder / codec / f"{quality}.png", _centre(decoded), force=True)
    # JSON has no infinity (the PSNR of a lossless decode): null
    write_atomic(folder / codec / f"{quality}.json", json.dumps(json_safe(measured), allow_nan=False).encode(), force=True)


def _key(job: Job) -> str:
    return json.dumps([job.codec, repr(job.quality), Path(job.image).name, repr(job.settings)])


def _logged(log: Path) -> dict[str, dict[str, Any]]:
    """The rows of an earlier sweep's job log, by job key; a line cut off by a kill is skipped."""
    done = {}
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[entry["key"]] = entry["row"]
    return done


def _run(jobs: list[Job], workers: int, progress: bool, log: Path, resume: bool, engine: str = "local",
         address: str | None = None) -> list[dict[str, Any]]:
    from tqdm import tqdm

    done = _logged(log) if resume else {}
    todo = [j for j in jobs if _key(j) not in done]
    log.parent.mkdir(parents=True, exist_ok=True)
    # rewritten, not appended to: a line that a kill cut off would swallow the next one written after it
    log.write_text("".join(json.dumps({"key": k, "row": r}) + "\n" for k, r in done.items()), encoding="utf-8")
    bar = dict(total=len(todo), disable=not progress, desc="evaluate", unit="img", dynamic_ncols=True)
    with open(log, "a", encoding="utf-8") as f:
        def record(job: Job, row: dict[str, Any]) -> None:
            done[_key(job)] = row
            f.write(json.dumps({"key": _key(job), "row": row}) + "\n")  # NaN stays NaN: Python reads it back
            f.flush()

        if engine == "ray":
            from ..engine import ray_map

            for j, row in tqdm(ray_map(run_job, todo, workers, address), **bar):
                record(j, row)
        elif workers <= 1 or len(todo) <= 1:
            for j in tqdm(todo, **bar):
                record(j, run_job(j))
        else:
            import multiprocessing as mp

            # spawn, not fork: forking a process that has started torch's thread pools can deadlock, and
            # spawn behaves the same on Linux, macOS and Windows.
            with mp.get_context("spawn").Pool(min(workers, len(todo)), initializer=one_thread_worker) as pool:
                for j, row in zip(todo, tqdm(pool.imap(run_job, todo, chunksize=1), **bar)):
                    record(j, row)
    return [done[_key(j)] for j in jobs]


def _mean(values: Iterable[float]) -> float:
    """Mean over images, skipping NaN (MS-SSIM is undefined on small images); NaN if nothing is left."""
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def summarize(rows: list[dict[str, Any]], codec: str) -> dict[str, list]:
    """The codec's "results" block: the mean over images at each quality, sorted by bpp."""
    by_quality: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["codec"] == codec:
            by_quality.setdefault(repr(r["quality"]), []).append(r)
    points = []
    for group in by_quality.values():
        p: dict[str, Any] = {"quality": group[0]["quality"]}
        p.update({k: _mean(r[k] for r in group) for k in METRICS + TIMES})
        # dB of the mean MS-SSIM, not the mean of per-image dB: published curves average raw MS-SSIM and
        # convert afterwards, and the two differ (Jensen), so this keeps our curve comparable with theirs.
        m = p["ms-ssim-rgb"]
        p["ms-ssim-db"] = math.nan if math.isnan(m) else ms_ssim_db(m)
        points.append(p)
    points.sort(key=lambda p: (math.isnan(p["bpp"]), p["bpp"]))
    keys = ("quality", "bpp", "psnr-rgb", "ms-ssim-rgb", "ssim-rgb", "ms-ssim-db", "psnr-hvs", "psnr-hvs-m") + TIMES
    return {k: [p[k] for p in points] for k in keys}


def json_safe(x: Any) -> Any:
    # JSON has no NaN or inf (Python would write the non-standard NaN/Infinity); null means "no value".
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, list):
        return [json_safe(v) for v in x]
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    return x


def write_codec_json(path: Path, codec: str, results: dict[str, list], data: Path, n_images: int,
                     settings: dict | None = None) -> None:
    doc = {
        "name": codec,
        "description": f"neuralcodecs {__version__} {codec}: mean over {n_images} images of {data.name}; "
                       "bpp from the file size; metrics on the decoded 8-bit RGB image; times in s/image.",
        "meta": {"source": "neuralcodecs", "dataset": data.name, "images": n_images,
                 # every setting, those only the encoder reads (which files leave out) included
                 "settings": {k: v for k, v in dataclasses.asdict(create_codec(codec, **(settings or {})).config).items()
                              if k != "quality"}},
        "results": results,
    }
    path.write_text(json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_per_image(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def evaluate(codecs: Sequence[str], data: str | os.PathLike, out: str | os.PathLike, workers: int = 1,
             anchor: str = "jpeg", references: Sequence[str | os.PathLike] = (),
             qualities: dict[str, list] | None = None, settings: dict[str, Any] | None = None,
             progress: bool = True, resume: bool = False, crops: Sequence[str] = (), engine: str = "local",
             address: str | None = None) -> dict[str, Any]:
    """Sweep each codec over its rate points on the images in `data` and write the results to `out`.

    codecs      registered codec names; each runs at `type(codec).qualities` or at qualities[name]
    anchor      BD reference: a codec name (swept too if it is not in `codecs`) or a curve file
    references  published curve files (any format `load_curve` reads): plotted dashed, and given BD
                rows against the anchor
    settings    codec settings (e.g. {"budget": 60}) for the codecs in `codecs`, not for a swept anchor
    workers     processes (spawned; call from under `if __name__ == "__main__":` in scripts); with
                engine="ray" and no address, the CPUs of the local Ray instance
    engine      "local" (a process pool on this machine) or "ray" (Ray tasks, on a cluster at `address` or
                on a local instance started for the sweep); the same jobs.jsonl, files and numbers
    resume      reuse the jobs an interrupted sweep logged in OUT/jobs.jsonl; run only the rest
    crops       images (file names or stems) whose decoded centres are kept in OUT/crops/ for
                `neuralcodecs report`'s side-by-side viewer

    Writes jobs.jsonl, per_image.csv, <codec>.json per codec, bd.csv, bd.md and rd.png. Returns {"curves": {codec:
    results block}, "bd": rows of the BD table, "rd_auc_interval": (lo, hi) bpp or None, "files": [...]}.
    """
    data, out = Path(data), Path(out)
    images = list_images(data)
    known = set(list_codecs())
    names = list(dict.fromkeys(codecs))  # keep order, drop repeats
    anchor_curve: Curve | None = None
    if anchor in known:
        if anchor not in names:
            names.insert(0, anchor)
    elif Path(anchor).is_file():
        anchor_curve = load_curve(anchor)
    else:
        raise ValueError(f"anchor {anchor!r} is neither a registered codec nor a curve file")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown codec(s) {unknown}; known: {', '.join(sorted(known))}")
    qualities = dict(qualities or {})
    stray = set(qualities) - set(names)
    if stray:
        raise ValueError(f"qualities given for codecs not evaluated: {sorted(stray)}")
    sweep = {n: list(qualities.get(n, get_entry(n).cls.qualities)) for n in names}
    empty = [n for n, qs in sweep.items() if not qs]
    if empty:
        raise ValueError(f"no qualities to evaluate for {empty}")
    ref_curves = load_references(references)  # fail on a bad reference before hours of work

    per_codec = {n: dict(settings or {}) if n in codecs else {} for n in names}
    for n, kw in per_codec.items():  # a setting a codec does not have fails now, not in a worker hours later
        create_codec(n, **kw)
    keep = set(crops)
    missing = keep - {p.name for p in images} - {p.stem for p in images}
    if missing:
        raise ValueError(f"--crops names images not in {data}: {sorted(missing)}")
    crop_dir = lambda img: str(out / "crops") if img.name in keep or img.stem in keep else ""  # noqa: E731
    jobs = [Job(n, q, str(img), tuple(sorted(per_codec[n].items())), crop_dir(img))
            for n in names for q in sweep[n] for img in images]
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    rows = _run(jobs, workers, progress, out / "jobs.jsonl", resume, engine, address)

    files = [out / "per_image.csv"]
    write_per_image(files[0], rows)
    curves: dict[str, dict[str, list]] = {}
    ours: list[Curve] = []
    for n in names:
        curves[n] = summarize(rows, n)
        path = out / f"{n}.json"
        write_codec_json(path, n, curves[n], data, len(images), per_codec[n])
        files.append(path)
        ours.append(make_curve(n, curves[n]["bpp"], curves[n]["psnr-rgb"], curves[n]["ms-ssim-rgb"]))
    if anchor_curve is None:
        anchor_curve = next(c for c in ours if c.name == anchor)

    rows_bd, interval, tables = write_report(anchor_curve, ours, ref_curves, out)
    files += tables
    draw_rd(ours, ref_curves, out / "rd.png", title=f"{data.name}: {len(images)} images", anchor=anchor_curve)
    files.append(out / "rd.png")
    return {"curves": curves, "bd": rows_bd, "rd_auc_interval": interval, "files": files}
