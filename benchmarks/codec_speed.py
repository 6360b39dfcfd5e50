"""Encode and decode speed of every codec, per image, on a folder of images.

    python benchmarks/codec_speed.py --data DIR --out DIR [--codec C ...] [--quality-index middle]
                                     [--set KEY=VALUE ...] [--limit N] [--stages]

Each codec runs at its default quality, or at the rate point --quality-index picks from its sweep
(low, middle, high or a number), with the --set settings (e.g. budget=60 for coconet, whose encoding
takes its time budget). One untimed warm-up first (`Codec.warm_up`), so imports and table building are not
counted; then every image is encoded and decoded once, timed with perf_counter. Torch gets 2 threads
(learned codecs run each convolution on one thread and cut their work into pieces that run side by side:
threads.py). Prints a table and writes codec_speed.json, keeping the rows of codecs it did not time.

--stages also says where a transform codec's time goes (on the threads its coding runs on): the analysis
g_a, the latent codec's compress and decompress, split into its integer networks (the exact entropy
parameters: h_s, and for minnen2018 the context g_ctx and e) and the rest (the float hyper-analysis h_a,
densities, range coding, the gain products), and the synthesis g_s; seconds per image in each row's
"stages", from the same calls encode and decode make, timed one by one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

import neuralcodecs as nc
from neuralcodecs.cli import parse_setting
from neuralcodecs.eval import list_images
from neuralcodecs.learned import VariableRateCodec
from neuralcodecs.registry import get_entry

ROOT = Path(__file__).resolve().parents[1]
TORCH_THREADS = 2


def default_data() -> Path:
    kodak = ROOT / ".." / "shared" / "data" / "kodak"
    return kodak.resolve() if kodak.is_dir() else ROOT / "samples"


def pick_quality(codec: str, index: str) -> Any:
    """The codec's default quality, or one of its standard rate points by position."""
    entry = get_entry(codec)
    qualities = list(entry.cls.qualities)
    if index == "default" or not qualities:
        return entry.cls.default_quality
    positions = {"low": 0, "middle": len(qualities) // 2, "high": len(qualities) - 1}
    if index in positions:
        return qualities[positions[index]]
    try:
        return qualities[int(index)]
    except (ValueError, IndexError):
        raise ValueError(f"--quality-index {index!r}: use default, low, middle, high or 0..{len(qualities) - 1}") from None


def time_codec(name: str, quality: Any, images: list[np.ndarray], settings: dict | None = None) -> dict[str, Any]:
    codec = nc.create_codec(name, quality=quality, **(settings or {}))
    codec.warm_up(images[0])
    enc, dec, bpp = [], [], []
    for img in images:
        t0 = time.perf_counter()
        data = codec.encode(img)
        t1 = time.perf_counter()
        nc.decode(data)
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
        bpp.append(nc.metrics.bpp(len(data), *img.shape[:2]))
    pixels = float(np.mean([img.shape[0] * img.shape[1] for img in images]))
    return {"codec": name, "quality": quality, "settings": settings or {}, "images": len(images),
            "encode_s": float(np.mean(enc)), "decode_s": float(np.mean(dec)),
            "encode_mpix_s": pixels / 1e6 / float(np.mean(enc)), "decode_mpix_s": pixels / 1e6 / float(np.mean(dec)),
            "bpp": float(np.mean(bpp))}


def time_stages(name: str, quality: Any, images: list[np.ndarray], settings: dict | None = None) -> dict[str, float]:
    """Seconds per image in each stage of a VariableRateCodec's encode and decode (see the module docstring)."""
    import torch

    from neuralcodecs.image import pad
    from neuralcodecs.threads import one_thread
    from neuralcodecs.nn.integer import IntegerNetwork

    codec = nc.create_codec(name, quality=quality, **(settings or {}))
    codec.warm_up(images[0])
    integer = [0.0]
    exact = {f: getattr(IntegerNetwork, f) for f in ("exact", "exact_checkerboard")}

    def timed(f):
        def run(self, x, **kw):
            t = time.perf_counter()
            try:
                return exact[f](self, x, **kw)
            finally:
                integer[0] += time.perf_counter() - t
        return run

    total: dict[str, float] = {}

    def add(key: str, seconds: float) -> None:
        total[key] = total.get(key, 0.0) + seconds / len(images)

    q = codec.config.quality - 1
    for f in exact:
        setattr(IntegerNetwork, f, timed(f))
    try:
        with one_thread(), torch.no_grad():
            for img in images:
                x = pad(img, codec.pad_to)
                t0 = time.perf_counter()
                y = codec.latents(x)
                t1 = time.perf_counter()
                integer[0] = 0.0
                chunks = codec.latent_codec.compress(y, q, codec.log_gain[[q]])
                t2 = time.perf_counter()
                add("encode integer networks", integer[0])
                add("encode latent codec, the rest", t2 - t1 - integer[0])
                integer[0] = 0.0
                y_hat = codec.latent_codec.decompress(chunks, tuple(y.shape), q, codec.log_gain[[q]])
                t3 = time.perf_counter()
                add("decode integer networks", integer[0])
                add("decode latent codec, the rest", t3 - t2 - integer[0])
                codec.image_of(y_hat, q)
                t4 = time.perf_counter()
                add("analysis g_a", t1 - t0)
                add("synthesis g_s", t4 - t3)
    finally:
        for f, method in exact.items():
            setattr(IntegerNetwork, f, method)
    return total


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="folder of PNG/JPEG images (default: Kodak if beside "
                   "the checkout, else samples/)")
    p.add_argument("--out", type=Path, required=True, help="folder for codec_speed.json")
    p.add_argument("--codec", action="append", default=None, help="codec to time (repeatable; default: all)")
    p.add_argument("--quality-index", default="default", help="default, low, middle, high or a position in "
                   "the codec's sweep")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the timed codecs (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="time only the first N images")
    p.add_argument("--stages", action="store_true", help="also time the stages of transform codecs")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(TORCH_THREADS)
    data = args.data or default_data()
    try:
        paths = list_images(data)[:args.limit]
        codecs = args.codec or nc.list_codecs(ready=True)
        plan = [(c, pick_quality(c, args.quality_index)) for c in codecs]
        settings = dict(map(parse_setting, args.set))
    except (OSError, ValueError, KeyError) as e:
        p.error(str(e))
    images = [nc.load_image(path) for path in paths]

    results = []
    print(f"{len(images)} images from {data}, torch threads {TORCH_THREADS}")
    print(f"{'codec':<14}{'quality':>9}{'bpp':>8}{'encode s':>11}{'decode s':>11}{'enc MP/s':>10}{'dec MP/s':>10}")
    for name, quality in plan:
        r = time_codec(name, quality, images, settings)
        results.append(r)
        print(f"{name:<14}{str(quality):>9}{r['bpp']:>8.3f}{r['encode_s']:>11.4f}{r['decode_s']:>11.4f}"
              f"{r['encode_mpix_s']:>10.2f}{r['decode_mpix_s']:>10.2f}")
        if args.stages and issubclass(get_entry(name).cls, VariableRateCodec):
            r["stages"] = time_stages(name, quality, images, settings)
            for stage, seconds in r["stages"].items():
                print(f"    {stage:<34}{seconds:>8.4f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "codec_speed.json"
    # codecs not timed now keep their rows from the same images: a slow one (coconet encodes for
    # minutes) need not run again because another changed
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    machine = {"python": platform.python_version(), "platform": platform.platform(),
               "processor": platform.processor() or platform.machine(), **cpu()}
    # (the same folder however it was named: a relative --data or the default's absolute path; and the same kind
    # of CPU: rows timed on another would mix machines in one table)
    if (earlier and Path(earlier["data"]).resolve() == Path(data).resolve()
            and earlier.get("torch_threads") == TORCH_THREADS and earlier.get("machine") == machine):
        timed = {r["codec"] for r in results}
        results = [r for r in earlier["results"] if r["codec"] not in timed] + results
    doc = {"data": str(data), "images": len(images), "torch_threads": TORCH_THREADS,
           "machine": machine,
           "neuralcodecs": nc.__version__, "results": results}
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def cpu() -> dict:
    """The CPU's model, whether it has AVX-512, and its cores: the machines this runs on differ in these, and
    the learned codecs' convolutions run about twice as fast with AVX-512."""
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []

    def field(key: str) -> str:
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), "")

    # the instruction sets PyTorch, oneDNN and MKL were held to, if any (such a run times other kernels)
    limits = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
              if k in os.environ}
    return {"cpu": field("model name"), "avx512": "avx512f" in field("flags").split(), "cores": os.cpu_count(),
            **({"isa_limits": limits} if limits else {})}


if __name__ == "__main__":
    main()
