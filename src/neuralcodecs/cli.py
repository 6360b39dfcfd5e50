"""The `neuralcodecs` command line.

    neuralcodecs list
    neuralcodecs encode IN OUT --codec C [--quality Q] [--set KEY=VALUE ...] [--native] [--force]
    neuralcodecs decode IN OUT [--force]
    neuralcodecs info FILE
    neuralcodecs truncate IN OUT --steps K [--force]
    neuralcodecs extract IN OUT [--force]
    neuralcodecs eval --codec C [--codec C ...] --data DIR --out DIR [--quality Q ...] [--set KEY=VALUE ...]
                      [--workers N] [--anchor jpeg] [--reference F ...] [--resume] [--crops IMAGE ...]
                      [--engine local|ray [--address A]]
    neuralcodecs report RESULTS_DIR [...] --out DIR [--reference F ...] [--anchor jpeg]
    neuralcodecs plot JSON... --out PNG [--reference F ...] [--anchor jpeg]
    neuralcodecs train CODEC --data DIR [DIR ...] --out RUN --steps N [--lmbda L,...] [--set KEY=VALUE ...]
                       [--resume] [every TrainConfig field as an option, e.g. --device cuda]
    neuralcodecs export RUN [--kodak DIR] [--int8 | --base FILE] [--average CHECKPOINT_OR_WEIGHTS ...]
    neuralcodecs pq quantize|eval|codec ...     (product quantization of network weights: a classifier's, a codec's)
    neuralcodecs demo [--image PNG] [--codec C] [--bpp B] [--out DIR] [--results DIR] [--force]

and the commands codecs declare (Codec.commands), e.g.
    neuralcodecs enhance IN.jpg OUT.png [--force]             (jiang2017-enhance)
    neuralcodecs upsample IN OUT.png [--scale 2] [--force]    (coconet)
    neuralcodecs roi IN OUT.png [--top-k K] [--centre C]      (prakash2017)

Outputs are written atomically and never overwrite an existing file without --force. Bad input prints
one line on stderr and exits with status 1 (2 for usage errors), never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
from pathlib import Path

DEMO_IMAGE = Path(__file__).resolve().parents[2] / "samples" / "kodim23.png"


# what a user's input or machine can cause, reported in one line: bad input (BitstreamError is a ValueError),
# files, a missing optional library, a codec library's or an evaluation job's failure (RuntimeError)
CLI_ERRORS = (ValueError, OSError, ImportError, RuntimeError)


def _quality(text: str):
    """Qualities are ints for most codecs, floats for some (jpeg2000's target PSNR)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def parse_setting(text: str) -> tuple[str, object]:
    """KEY=VALUE -> (key, bool, int, float or string value)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set takes KEY=VALUE, got {text!r}")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    try:
        return key, _quality(value)
    except argparse.ArgumentTypeError:
        return key, value


def _read(path: str) -> bytes:
    """A file's bytes; "-" reads standard input."""
    return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()


def _write(path: str, data: bytes, force: bool) -> None:
    """Write atomically (never over an existing file without force); "-" writes standard output."""
    from .image import write_atomic

    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomic(path, data, force=force)


def _say(args, text: str) -> None:
    """A status line: on stderr when standard output carries the data."""
    print(text, file=sys.stderr if getattr(args, "output", None) == "-" else sys.stdout)


def cmd_list(args) -> None:
    from .registry import get_entry, list_codecs

    names = list_codecs()
    width = max(map(len, names))
    for name in names:
        cls = get_entry(name).cls
        flags = (" progressive" if cls.progressive else "") + ("" if cls.trained(name) else " (no trained weights yet)")
        print(f"{name:{width}s}  default quality {cls.default_quality!s:6s} sweep {list(cls.qualities)}{flags}")
        print(f"{'':{width}s}  quality: {cls.quality_meaning}")


def _batch(args, files: list[Path], target, work) -> None:
    """Folder mode: work(file, out_path) for each file into the folder args.output, with a progress bar; a
    file that fails is reported and skipped, the rest go on; a summary at the end (exit 1 if any failed)."""
    from tqdm import tqdm

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    def attempt(f: Path) -> tuple[int, str | None]:
        try:
            return work(f, out / target(f)), None
        except CLI_ERRORS as e:
            return 0, f"{f.name}: {e}"

    if args.engine == "ray":  # the same work as Ray tasks (engine.py), in the order they finish
        from .engine import ray_map

        results = (r for _, r in ray_map(attempt, files, args.workers, args.address))
    else:
        results = map(attempt, files)
    done, failed, size = 0, [], 0
    for n, error in tqdm(results, total=len(files), desc=args.command, unit="file", dynamic_ncols=True):
        size += n
        done += error is None
        if error:
            failed.append(error)
    print(f"{done} of {len(files)} files {args.command}d into {out}/ ({size} bytes)")
    for line in failed:
        print(f"  failed: {line}", file=sys.stderr)
    if failed:
        raise ValueError(f"{len(failed)} of {len(files)} files failed")


def cmd_encode(args) -> None:
    from . import create_codec, load_image, metrics

    settings = dict(parse_setting(text) for text in args.set or [])
    codec = create_codec(args.codec, quality=args.quality, **settings)
    if Path(args.input).is_dir():
        from .image import image_files

        def one(f: Path, out: Path) -> int:
            image = load_image(f, alpha=args.alpha)
            data = codec.encode_native(image) if args.native else codec.encode(image)
            _write(str(out), data, args.force)
            return len(data)

        ext = (codec.native_ext or ".ncdc") if args.native else ".ncdc"
        files = image_files(args.input)
        return _batch(args, files, lambda f: f.stem + ext, one)
    image = load_image(io.BytesIO(_read(args.input)) if args.input == "-" else args.input, alpha=args.alpha)
    data = codec.encode_native(image) if args.native else codec.encode(image)
    _write(args.output, data, args.force)
    h, w = image.shape[:2]
    _say(args, f"{args.output}: {args.codec} q={codec.config.quality} {len(data)} bytes, "
               f"{metrics.bpp(len(data), h, w):.4f} bpp")


def cmd_decode(args) -> None:
    from . import decode
    from .image import encode_image, lossless_format, save_image

    if args.output == "-":  # PNG on standard output
        _write("-", encode_image(decode(_read(args.input)), ".png"), True)
        return
    if Path(args.input).is_dir():
        def one(f: Path, out: Path) -> int:
            save_image(out, decode(f.read_bytes()), force=args.force)
            return out.stat().st_size

        files = sorted(Path(args.input).glob("*.ncdc"))
        return _batch(args, files, lambda f: f.stem + ".png", one)
    lossless_format(args.output)  # refuse a lossy or unknown suffix before decoding
    out = Path(args.output)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists (use --force to overwrite)")
    save_image(out, decode(_read(args.input)), force=args.force)


def cmd_info(args) -> None:
    from . import info

    print(json.dumps(info(_read(args.input)), indent=2))


def cmd_truncate(args) -> None:
    from . import truncate
    from .image import write_atomic

    write_atomic(args.output, truncate(_read(args.input), args.steps), force=args.force)


def cmd_extract(args) -> None:
    from . import extract
    from .image import write_atomic

    data, ext = extract(_read(args.input))
    write_atomic(args.output, data, force=args.force)
    print(f"{args.output}: the {ext} file inside {args.input} ({len(data)} bytes)")


def cmd_eval(args) -> None:
    from .eval import evaluate

    qualities = {name: args.quality for name in args.codec} if args.quality else None
    evaluate(args.codec, args.data, args.out, workers=args.workers, anchor=args.anchor,
             references=args.reference or [], qualities=qualities,
             settings=dict(map(parse_setting, args.set or [])), resume=args.resume, crops=args.crops or (),
             engine=args.engine, address=args.address)
    print(f"results in {args.out}: per_image.csv, <codec>.json, bd.md, rd.png"
          + (", crops/ (for `neuralcodecs report`)" if args.crops else ""))


def cmd_report(args) -> None:
    from .eval.report import build_report

    page = build_report(args.results, args.out, references=args.reference or [], anchor=args.anchor,
                        title=args.title, force=args.force)
    print(f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB): open it in a browser")


def cmd_plot(args) -> None:
    from .eval import plot

    if Path(args.out).exists() and not args.force:
        raise FileExistsError(f"{args.out} exists (use --force to overwrite)")
    files = plot([Path(p) for p in args.json], Path(args.out), references=[Path(p) for p in args.reference or []],
                 anchor=args.anchor)
    print("wrote " + ", ".join(str(f) for f in files))


def cmd_train(args) -> None:
    from .train import TrainConfig, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["lmbda"] = [float(v) for v in args.lmbda.split(",")] if args.lmbda else None
    values["settings"] = dict(parse_setting(text) for text in args.set or [])
    print(f"checkpoint: {train(TrainConfig(**values), resume=args.resume)}")


def cmd_export(args) -> None:
    from .train.export import export

    export(Path(args.run), kodak=args.kodak, command=args.command_line, workers=args.workers, int8=args.int8,
           average=[Path(p) for p in args.average], base=args.base)


DEMO_CODECS = ("jpeg", "prakash2017", "webp", "heif", "balle2017", "theis2017", "balle2018", "minnen2018")


def cmd_demo(args) -> None:
    """Every demo codec at the rate point whose file is nearest in size to the target (jpeg at quality 50 unless
    --bpp), decoded, measured and printed side by side."""
    import time

    from . import decode, load_image, metrics
    from .eval.report import build_report
    from .eval.sweep import keep_crop
    from .image import save_image, write_atomic
    from .registry import create_codec, get_entry, list_codecs

    image = load_image(args.image, alpha="flatten")
    h, w = image.shape[:2]
    out, stem = Path(args.out), Path(args.image).stem
    target = args.bpp * h * w / 8 if args.bpp else len(create_codec("jpeg", quality=50).encode(image))
    ready = set(list_codecs(ready=True))
    names = [n for n in args.codec or DEMO_CODECS if n in ready or args.codec]
    print(f"{args.image}: {w}x{h}; each codec at the rate point nearest {target:.0f} bytes "
          f"({metrics.bpp(int(target), h, w):.3f} bpp)")
    print(f"{'codec':12s} {'quality':>7s} {'bytes':>7s} {'bpp':>6s} {'PSNR':>6s} {'MS-SSIM':>7s} {'enc s':>6s} {'dec s':>6s}")
    for name in names:
        qualities = get_entry(name).cls.qualities
        sizes = {q: len(create_codec(name, quality=q).encode(image)) for q in qualities}
        quality = min(sizes, key=lambda q: abs(sizes[q] - target))
        codec = create_codec(name, quality=quality)
        t0 = time.perf_counter()
        data = codec.encode(image)
        t1 = time.perf_counter()
        decoded = decode(data)
        t2 = time.perf_counter()
        write_atomic(out / f"{stem}.{name}.ncdc", data, force=args.force)
        save_image(out / f"{stem}.{name}.png", decoded, force=args.force)
        keep_crop(out / "crops" / stem, name, quality, image, decoded,
                  {"bpp": metrics.bpp(len(data), h, w), "psnr": metrics.psnr(image, decoded)})
        print(f"{name:12s} {quality!s:>7s} {len(data):7d} {metrics.bpp(len(data), h, w):6.3f} "
              f"{metrics.psnr(image, decoded):6.2f} {metrics.ms_ssim(image, decoded):7.4f} {t1 - t0:6.2f} {t2 - t1:6.2f}")
    # the page: the Kodak curves (when run from the repository) and these decoded crops side by side
    folders = [f for f in (args.results, out) if f and Path(f).is_dir()]
    page = build_report(folders, out / "report", anchor="jpeg", force=args.force,
                        title=f"neuralcodecs demo: {Path(args.image).name} at about {target:.0f} bytes")
    print(f"wrote the files and the decoded images to {out}/, the report page to {page}")


def cmd_pq(args) -> None:
    """Product quantization of a classifier's weights (Stock et al. 2020): quantize, or measure a file."""
    import time

    from .image import write_atomic
    from .quant import PQConfig, classifier, load, pq

    if args.pq_command == "quantize":
        if Path(args.out).exists() and not args.force:
            raise FileExistsError(f"{args.out} exists (use --force to overwrite)")
        t = time.time()
        cfg = PQConfig(codewords=args.codewords, large=args.large, em_iterations=args.em_iterations, seed=args.seed,
                       refine_passes=args.refine_passes, sizes=tuple(args.sizes or ()),
                       codebook_sizes=tuple(args.codebook_sizes or ()))
        data = classifier.quantize_classifier(args.model, args.calibration, cfg, images=args.images,
                                              finetune_images=args.finetune_images, finetune_steps=args.finetune_steps,
                                              batch=args.batch, lr=args.lr, feature_weight=args.feature_weight,
                                              start=Path(args.start).read_bytes() if args.start else None,
                                              layer_steps=args.layer_steps, tune=args.tune, augment=args.augment,
                                              reassign_every=args.reassign_every, latent_lr=args.latent_lr)
        write_atomic(args.out, data, force=args.force)
        print(f"wrote {args.out}: {len(data)} bytes in {time.time() - t:.0f} s")
        return
    if args.pq_command == "codec":
        _pq_codec(args)
        return
    from tqdm import tqdm

    data = Path(args.file).read_bytes()
    student = load(data, lambda name: classifier.build(name, pretrained=False))
    meta_model = "efficientnet-lite0"
    teacher = classifier.build(meta_model)
    items = classifier.labelled(args.data)[:args.limit]
    t = time.time()
    with tqdm(total=2 * len(items), desc="top-1", dynamic_ncols=True) as bar:
        top1 = classifier.top1(student, items, progress=bar.update)
        top1_teacher = classifier.top1(teacher, items, progress=bar.update)
    print(json.dumps({"file": args.file, "model": meta_model, "images": len(items), "top1": top1,
                      "top1_teacher": top1_teacher, "bytes": len(data),
                      "teacher_bytes": pq.parameter_bytes_fp32(teacher),
                      "ratio": pq.parameter_bytes_fp32(teacher) / len(data), "seconds": round(time.time() - t, 1)}))


def _pq_codec(args) -> None:
    """A learned codec's transforms product-quantized into codec NAME's weights (quant/codec.py), written where
    weights load from with their manifest entry, measured on Kodak with --kodak."""
    import time

    import torch

    from . import weights
    from .quant.codec import pack, parametrize_packed, quantize_codec
    from .registry import create_codec, get_entry
    from .train.data import RandomCrops
    from .train.export import write_measured

    cls = get_entry(args.name).cls
    if not hasattr(cls, "pq_config"):
        raise ValueError(f"{args.name} is not a product-quantized codec (codecs with a pq_config: balle2017-pq)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = create_codec(cls.teacher)
    student = cls(cls.Config(), name=args.name)
    if args.start:  # a weights file this command wrote, fine-tuned further
        parametrize_packed(student, weights.read_state(args.start), teacher.state_dict())
    else:
        student.load_state_dict(teacher.state_dict())
    data = RandomCrops(args.data, args.crop, cache=out / "photos.npz")
    t = time.time()
    codec = quantize_codec(student, cls.pq_config, data, calibration=args.calibration, steps=args.steps,
                           batch=args.batch, lr=args.lr, seed=args.seed, gdn_block=cls.gdn_block,
                           layer_steps=args.layer_steps, reassign_every=args.reassign_every,
                           latent_lr=args.latent_lr, start=bool(args.start), tune_gains=args.tune_gains)

    teacher_entry = weights.manifest()[cls.teacher]
    entry = {"codec": args.name, "settings": teacher_entry.get("settings", {}), "lmbdas": list(codec.lmbdas),
             "steps": teacher_entry.get("steps", 0), "pq_steps": args.steps, "data": list(args.data),
             "batch": args.batch, "crop": args.crop, "command": args.command_line,
             "pq": {"teacher": cls.teacher, "teacher_fingerprint": teacher_entry.get("fingerprint"),
                    "seconds": round(time.time() - t)}}
    # xz: the coding tables, integers kept exactly, are a quarter of the packed state and compress ~4x
    write_measured(args.name, pack(codec), entry, args.kodak, out / "kodak", args.workers, xz=True)


def _pattern_value(text: str) -> tuple[str, int]:
    """PATTERN=N, as PQConfig's per-layer (substring of module names, value) pairs."""
    pattern, sep, value = text.rpartition("=")
    if not sep or not pattern or not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected PATTERN=N with N a positive integer, not {text!r}")
    return pattern, int(value)


def _add_reassign_options(parser: argparse.ArgumentParser) -> None:
    """The options of PQ fine-tuning that moves the assignments (pq.fine_tune's reassign_every, latent_lr)."""
    parser.add_argument("--reassign-every", type=int, default=0,
                        help="fine-tuning moves the assignments too: latent weights trained straight through, each "
                             "block moved to the codeword nearest its latent every N steps (0: codewords only)")
    parser.add_argument("--latent-lr", type=float, default=None,
                        help="the latent weights' learning rate (default: --lr)")


def _add_config_options(parser: argparse.ArgumentParser, skip: list[str]) -> None:
    """An option per field of TrainConfig (its type and default), so the CLI never lags behind the config."""
    from .train import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).replace(" | None", "")
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f"TrainConfig.{f.name}")
        else:
            parser.add_argument(flag, type={"int": int, "float": float}.get(kind, str), default=f.default,
                                help=f"TrainConfig.{f.name}")


def _quality_table() -> str:
    """What --quality means for each codec, and its default."""
    from .registry import get_entry, list_codecs

    names = list_codecs()
    width = max(map(len, names))
    rows = [f"  {n:{width}s}  {get_entry(n).cls.quality_meaning}; default {get_entry(n).cls.default_quality}"
            for n in names]
    return "quality, per codec:\n" + "\n".join(rows)


def _engine_options(s, workers: bool = True) -> None:
    s.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this machine (default); ray: Ray tasks (pip install 'neuralcodecs[ray]'), "
                        "for folders of images")
    s.add_argument("--address", help="with --engine ray: the cluster to join (e.g. auto or ray://HEAD:10001); "
                   "default: a local Ray instance with --workers CPUs")
    if workers:
        s.add_argument("--workers", type=int, default=1, help="with --engine ray and no --address: its CPUs")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="neuralcodecs", description="Learned and classical image codecs.")
    p.add_argument("--version", action="version", version=f"neuralcodecs {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="registered codecs").set_defaults(fn=cmd_list)

    s = sub.add_parser("encode", help="compress an image", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=_quality_table())
    s.add_argument("input", help="an image file, - for standard input, or a folder of images")
    s.add_argument("output", help="the file to write, - for standard output, or a folder (when INPUT is one)")
    s.add_argument("--codec", default="jpeg", help="a codec of `neuralcodecs list` (default: jpeg)")
    s.add_argument("--quality", type=_quality, help="the codec's quality (meaning and default below)")
    s.add_argument("--native", action="store_true", help="write the codec's standard file format (e.g. .jpg)")
    s.add_argument("--alpha", choices=("keep", "flatten", "drop"), default="keep",
                   help="an alpha channel: keep it (png only), flatten the image onto white, or drop it "
                        "(default: keep)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="a codec setting (repeatable)")
    s.add_argument("--force", action="store_true"); _engine_options(s); s.set_defaults(fn=cmd_encode)

    s = sub.add_parser("decode", help="decompress a neuralcodecs file to a lossless image")
    s.add_argument("input", help="a neuralcodecs file, - for standard input, or a folder of .ncdc files")
    s.add_argument("output", help="the image (.png, .ppm, .tif, .bmp), - for PNG on standard output, or a folder "
                                  "(PNG files, when INPUT is one)")
    s.add_argument("--force", action="store_true", help="overwrite OUTPUT")
    _engine_options(s); s.set_defaults(fn=cmd_decode)

    s = sub.add_parser("info", help="what a file holds"); s.add_argument("input"); s.set_defaults(fn=cmd_info)

    s = sub.add_parser("truncate", help="keep the first K steps of a progressive file")
    s.add_argument("input"); s.add_argument("output"); s.add_argument("--steps", type=int, required=True)
    s.add_argument("--force", action="store_true"); s.set_defaults(fn=cmd_truncate)

    s = sub.add_parser("extract", help="write out the standard image file (JPEG, ...) a file holds")
    s.add_argument("input"); s.add_argument("output"); s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_extract)

    s = sub.add_parser("eval", help="rate-distortion sweep over a folder of images")
    s.add_argument("--codec", action="append", required=True)
    s.add_argument("--quality", type=_quality, nargs="+",
                   help="the rate points of the --codec codecs to sweep (default: all of each codec's)")
    s.add_argument("--data", required=True); s.add_argument("--out", required=True)
    s.add_argument("--workers", type=int, default=1); s.add_argument("--anchor", default="jpeg")
    s.add_argument("--reference", nargs="+", help="published curves to overlay and rank")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a setting of the --codec codecs (repeatable), e.g. budget=60 for coconet")
    s.add_argument("--resume", action="store_true",
                   help="keep the jobs an interrupted sweep logged in OUT/jobs.jsonl and run only the rest")
    s.add_argument("--crops", nargs="+", metavar="IMAGE",
                   help="keep the decoded centres of these images (names or stems) for `report`'s viewer")
    _engine_options(s, workers=False); s.set_defaults(fn=cmd_eval)

    s = sub.add_parser("report", help="a self-contained HTML page of an eval folder: RD charts, BD table, viewer")
    s.add_argument("results", nargs="+", help="folders `eval` (or `demo`) wrote"); s.add_argument("--out", required=True)
    s.add_argument("--reference", nargs="+", help="published curves to draw dashed and rank")
    s.add_argument("--anchor", default="jpeg", help="the BD table's anchor (default: jpeg)")
    s.add_argument("--title"); s.add_argument("--force", action="store_true", help="overwrite OUT/index.html")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("plot", help="redraw the RD plot from saved JSON")
    s.add_argument("json", nargs="+"); s.add_argument("--out", required=True)
    s.add_argument("--reference", nargs="+")
    s.add_argument("--anchor", help="also write bd.csv/bd.md against this curve (a codec name among the JSONs, "
                   "or a curve file)")
    s.add_argument("--force", action="store_true", help="overwrite OUT")
    s.set_defaults(fn=cmd_plot)

    s = sub.add_parser("train", help="train a learned codec", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("codec"); s.add_argument("--data", nargs="+", required=True); s.add_argument("--out", required=True)
    s.add_argument("--steps", type=int, required=True)
    s.add_argument("--lmbda", help="comma-separated lambdas of the rate points (default: the codec's)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="a setting of the codec (repeatable)")
    s.add_argument("--resume", action="store_true", help="continue the checkpoint in --out exactly")
    _add_config_options(s, "codec data out steps lmbda settings".split())
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("export", help="ship a trained run's weights in the package (half precision + manifest); "
                                      "set NEURALCODECS_WEIGHTS=DIR to write and load elsewhere")
    s.add_argument("run"); s.add_argument("--kodak", help="folder of Kodak images to measure bpp/PSNR on")
    s.add_argument("--command-line", default="", help="the training command, recorded in the manifest")
    s.add_argument("--workers", type=int, default=1, help="processes for the Kodak measurement")
    s.add_argument("--int8", action="store_true",
                   help="large weight tensors in 8 bits with a scale per output channel (half the bytes)")
    s.add_argument("--average", nargs="+", default=[], metavar="PATH",
                   help="ship the mean of the run's parameters and these (checkpoint.pt files of runs of the same "
                        "codec, or weights files): weight averaging along a run or over runs from one start")
    s.add_argument("--base", metavar="FILE",
                   help="ship as an update of FILE, a weights file in the weights folder that stays as it is: the "
                        "large tensors as 4-bit differences from its own (a few MB for fine-tuning or averaging)")
    s.set_defaults(fn=cmd_export)

    from .quant import PQConfig

    s = sub.add_parser("pq", help="product quantization of a network's weights (And the Bit Goes Down)")
    pq_sub = s.add_subparsers(dest="pq_command", required=True)
    q = pq_sub.add_parser("quantize", help="quantize a classifier", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    q.add_argument("--model", default="efficientnet-lite0", help="the classifier")
    q.add_argument("--calibration", required=True, nargs="+",
                   help="folders of images (not the evaluation ones) for activations and distillation")
    q.add_argument("--out", required=True, help="the compressed network's file")
    q.add_argument("--codewords", type=int, default=256, help="k, codewords per layer")
    q.add_argument("--large", action="store_true", help="the paper's large-block setting")
    q.add_argument("--em-iterations", type=int, default=20, help="EM iterations per layer")
    q.add_argument("--sizes", type=_pattern_value, action="append", metavar="PATTERN=D",
                   help="block size d of the layers whose names contain PATTERN, the first match (repeatable; "
                        "default: the model's own, classifier.SIZES)")
    q.add_argument("--codebook-sizes", type=_pattern_value, action="append", metavar="PATTERN=K",
                   help="codewords of the layers whose names contain PATTERN, the first match (repeatable; "
                        "the others have --codewords)")
    q.add_argument("--images", type=int, default=256, help="calibration images for the EM's activations")
    # off for the classifier: it lowers the error on the calibration images only, and top-1 on others with it
    # (README: "Why the constants are what they are")
    q.add_argument("--refine-passes", type=int, default=0,
                   help=f"passes of the assignment refinement that sees each output channel's whole input "
                        f"(codecs use {PQConfig.refine_passes})")
    q.add_argument("--finetune-images", type=int, default=2048,
                   help="images for batch-norm re-estimation and distillation (at most all there are)")
    q.add_argument("--finetune-steps", type=int, default=200, help="codeword fine-tuning steps (distillation)")
    q.add_argument("--layer-steps", type=int, default=0,
                   help="steps of fine-tuning each layer's codewords alone right after its EM (0: none)")
    q.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate")
    q.add_argument("--batch", type=int, default=16, help="fine-tuning batch")
    q.add_argument("--feature-weight", type=float, default=0.0,
                   help="weight of the blocks' output error (relative to the teacher's) beside the output KL")
    q.add_argument("--tune", choices=("norms", "stored"), default="norms",
                   help="what fine-tunes with the codewords: the batch norms, or every tensor stored as it is")
    q.add_argument("--augment", action="store_true",
                   help="distil on random crops, flips and mixtures of the photos instead of their centre crops")
    q.add_argument("--from", dest="start", default=None, metavar="FILE",
                   help="fine-tune further a file this command wrote (its codewords; no EM), with its config")
    _add_reassign_options(q)
    q.add_argument("--seed", type=int, default=0, help="seed")
    q.add_argument("--force", action="store_true", help="overwrite --out")
    c = pq_sub.add_parser("codec", help="product-quantize a learned codec's transforms into NAME's weights",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("name", help="the quantized codec (balle2017-pq)")
    c.add_argument("--data", required=True, nargs="+", help="folders of training photos (never Kodak)")
    c.add_argument("--out", required=True, help="a work folder (photo cache, Kodak results)")
    c.add_argument("--steps", type=int, default=2000, help="fine-tuning steps (all codewords, GDNs, biases)")
    c.add_argument("--layer-steps", type=int, default=0,
                   help="steps of fine-tuning each layer's codewords alone right after its EM (0: none)")
    _add_reassign_options(c)
    c.add_argument("--from", dest="start", default=None, metavar="FILE",
                   help="fine-tune further a weights file this command wrote (no EM); the file keeps no density "
                        "parameters, so they come from the teacher shipped now: use a file made from that teacher "
                        "(the shipped balle2017-pq was made from an earlier balle2017, see its manifest entry)")
    c.add_argument("--tune-gains", action="store_true",
                   help="the rate points' gains fine-tune too (the coding tables stay exactly the teacher's)")
    c.add_argument("--calibration", type=int, default=64, help="crops whose activations the EM sees")
    c.add_argument("--batch", type=int, default=8, help="fine-tuning batch")
    c.add_argument("--crop", type=int, default=128, help="crop size")
    c.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate (cosine decay to 0)")
    c.add_argument("--seed", type=int, default=0, help="seed")
    c.add_argument("--threads", type=int, default=1, help="torch threads")
    c.add_argument("--kodak", default=None, help="measure on these images when written")
    c.add_argument("--workers", type=int, default=1, help="processes for the Kodak measurement")
    c.add_argument("--command-line", default="", help="the command, recorded in the manifest")
    e = pq_sub.add_parser("eval", help="top-1 of a quantized network and of its teacher; the last line is JSON")
    e.add_argument("file"); e.add_argument("--data", required=True, help="ImageNet-labelled folder (labels.csv)")
    e.add_argument("--limit", type=int, default=None, help="first N images only")
    s.set_defaults(fn=cmd_pq)

    # commands declared by codecs (Codec.commands), each added once
    from .registry import get_entry, list_codecs

    seen = set()
    for name in list_codecs():
        for command in get_entry(name).cls.commands:
            if command.name not in seen:
                seen.add(command.name)
                s = sub.add_parser(command.name, help=command.help)
                command.add_arguments(s)
                s.set_defaults(fn=command.run)

    s = sub.add_parser("demo", help="compress and decode the shipped sample image")
    s.add_argument("--image", default=str(DEMO_IMAGE), help="the image (default: the shipped Kodak sample)")
    s.add_argument("--codec", action="append", help=f"a codec to compare (repeatable; default: {', '.join(DEMO_CODECS)})")
    s.add_argument("--bpp", type=float, help="target size in bits per pixel (default: jpeg quality 50's size)")
    s.add_argument("--out", default="out/demo"); s.add_argument("--force", action="store_true", help="overwrite")
    s.add_argument("--results", default="results/kodak", help="an eval folder whose curves the report page shows "
                   "beside the demo's crops (default: results/kodak, when it exists)")
    s.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .codec import show_progress

    show_progress(True)  # slow codecs show their steps on a terminal's stderr
    try:
        args.fn(args)
    except KeyboardInterrupt:
        print("neuralcodecs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`neuralcodecs list | head`): stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (*CLI_ERRORS, KeyError, TypeError, NotImplementedError) as e:
        # one line, no traceback
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"neuralcodecs {args.command}: error: {msg}", file=sys.stderr)
        return 1
    finally:
        show_progress(False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
