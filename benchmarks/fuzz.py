"""Fuzz the decoder with hostile files: mutations of valid files whose checksums are recomputed, so every
input reaches the codecs (random bit flips alone stop at the CRCs).

    .venv/bin/python benchmarks/fuzz.py --inputs 100000 --out out/fuzz      # all golden files as seeds

Mutations: header fields (height, width, channels), the settings JSON (values replaced by other types, huge
or negative numbers, keys dropped or added, the codec name swapped for another), chunk payloads (bit flips,
byte runs overwritten, truncation, extension, 16/32-bit fields equal to the image size replaced by large
values, as a standard file's own size fields are) and chunk lists (dropped, duplicated). Each input is
decoded in a worker process under an address-space limit (3 GB above what the worker holds after loading
every codec) and a timeout (--timeout, 10 s by default); a worker that dies is an abort, one that times out a hang.

Outcomes per codec: ok (decoded to an image of the claimed shape), BitstreamError, and everything else
(other exceptions, memory, hang, abort), which must be 0. The worker runs with a decoder pixel limit of
2^22 pixels (NEURALCODECS_MAX_PIXELS), as a server decoding uploads would set it, so a claimed size costs
at most that many pixels of decoding. Prints a table and writes fuzz.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import select
import struct
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
TIMEOUT = 10.0
ALLOC_LIMIT = 3 << 30
MAX_PIXELS = 1 << 22

INTERESTING = [0, 1, -1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 63, 64, 100, 255, 256, 1000, 4096, 65535, 65536,
               100000, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, 10 ** 18, -2 ** 31, 1e308, -1e308, 0.5, 75.5]
VALUES = INTERESTING + ["", "x", "lstm", "gru", "fc", "sine", "relu", "jpeg", "heif", "420", "444", True, False,
                        None, [], {}, [1, 2]]


# -- mutations ---------------------------------------------------------------------------------------
def mutate(parts: dict, rng: random.Random, names: list[str]) -> dict:
    p = {**parts, "settings": dict(parts["settings"]), "chunks": list(parts["chunks"])}
    kind = rng.choice(["shape", "settings", "settings", "name", "chunk", "chunk", "chunk", "chunk", "size_field",
                       "chunks"])
    if kind == "shape":
        h, w, c = p["shape"]
        field = rng.randrange(3)
        value = rng.choice([0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 63, 64, 65, 255, 1000, 2048, 3000, 65535]
                           + [rng.randrange(1, 5000)])
        p["shape"] = tuple(value if i == field else v for i, v in enumerate((h, w, c)))
        if field == 2:
            p["shape"] = (h, w, value % 256)
    elif kind == "settings":
        keys = list(p["settings"])
        op = rng.random()
        if keys and op < 0.6:
            p["settings"][rng.choice(keys)] = rng.choice(VALUES)
        elif keys and op < 0.8:
            del p["settings"][rng.choice(keys)]
        else:
            p["settings"][rng.choice(["N", "M", "extra", "quality", "bits", "cell"])] = rng.choice(VALUES)
    elif kind == "name":
        p["name"] = rng.choice(names)
    elif kind in ("chunk", "size_field") and p["chunks"]:
        i = rng.randrange(len(p["chunks"]))
        data = bytearray(p["chunks"][i])
        if kind == "size_field":
            data = _size_fields(data, p["shape"], rng)
        else:
            op = rng.random()
            if op < 0.35 and data:
                for _ in range(rng.randint(1, 4)):
                    j = rng.randrange(len(data))
                    data[j] ^= 1 << rng.randrange(8)
            elif op < 0.6 and data:
                j = rng.randrange(len(data))
                n = rng.randint(1, 16)
                data[j:j + n] = bytes(rng.choice([0, 255, rng.randrange(256)]) for _ in range(n))
            elif op < 0.8:
                data = data[:rng.randrange(len(data) + 1)]
            else:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        p["chunks"][i] = bytes(data)
    elif kind == "chunks" and p["chunks"]:
        if rng.random() < 0.5:
            del p["chunks"][rng.randrange(len(p["chunks"]))]
        else:
            p["chunks"].insert(rng.randrange(len(p["chunks"]) + 1), rng.choice(p["chunks"]))
    return p


def _size_fields(data: bytearray, shape, rng: random.Random) -> bytearray:
    """Replace 16- or 32-bit integers (either byte order) equal to a side of the image (or its padded size)."""
    sides = {s for v in shape[:2] for s in (v, v + 1, (v + 7) // 8 * 8, (v + 15) // 16 * 16, (v + 63) // 64 * 64)}
    spots = []
    for fmt in (">H", "<H", ">I", "<I"):
        n = struct.calcsize(fmt)
        for j in range(0, max(0, len(data) - n + 1)):
            if struct.unpack_from(fmt, data, j)[0] in sides:
                spots.append((fmt, j))
    if not spots:
        j = rng.randrange(len(data)) if data else 0
        data[j:j + 2] = b"\xff\xff"
        return data
    for fmt, j in rng.sample(spots, min(len(spots), rng.randint(1, 2))):
        top = 65535 if fmt.endswith("H") else 2 ** 32 - 1
        struct.pack_into(fmt, data, j, rng.choice([top, 30000, 16384, 4096, 0, 1, rng.randrange(top)]))
    return data


# -- the worker: decodes what it is sent ------------------------------------------------------------
def worker() -> None:
    os.environ["NEURALCODECS_MAX_PIXELS"] = str(MAX_PIXELS)
    import numpy as np

    import neuralcodecs as nc
    from neuralcodecs import container

    for f in sorted(GOLDEN.glob("*.ncdc")):  # load every codec and its weights before the limit
        nc.decode(f.read_bytes())
    soft = _vm_bytes() + ALLOC_LIMIT
    resource.setrlimit(resource.RLIMIT_AS, (soft, resource.RLIM_INFINITY))
    out = sys.stdout.buffer
    out.write(b"R")
    out.flush()
    src = sys.stdin.buffer
    while True:
        head = src.read(4)
        if len(head) < 4:
            return
        data = src.read(struct.unpack(">I", head)[0])
        try:
            header = container.read_header(data)
            x = nc.decode(data)
            expected = (header.height, header.width) + ((header.channels,) if header.channels > 1 else ())
            result = "ok" if x.shape == expected and x.dtype == np.uint8 else f"wrong-shape {x.shape}"
        except nc.BitstreamError:
            result = "BitstreamError"
        except MemoryError:
            result = "memory"
        except BaseException as e:  # noqa: BLE001 - every other outcome is what we are looking for
            result = f"{type(e).__name__}: {str(e)[:120]}"
        out.write(result.encode()[:250].ljust(256))
        out.flush()


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


class Worker:
    def __init__(self, timeout: float = TIMEOUT):
        self.timeout = timeout
        self.p = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, cwd=ROOT)
        started, _, _ = select.select([self.p.stdout], [], [], 120)  # importing torch: seconds, not minutes
        if not started or self.p.stdout.read(1) != b"R":
            raise RuntimeError("fuzz worker failed to start")

    def run(self, data: bytes) -> str:
        try:
            self.p.stdin.write(struct.pack(">I", len(data)) + data)
            self.p.stdin.flush()
        except BrokenPipeError:
            return self._died()
        ready, _, _ = select.select([self.p.stdout], [], [], self.timeout)
        if not ready:
            self.p.kill()
            self.p.wait()
            return "hang"
        reply = self.p.stdout.read(256)
        if len(reply) < 256:
            return self._died()
        return reply.decode().rstrip()

    def _died(self) -> str:
        code = self.p.wait()
        return f"abort (exit {code})"

    @property
    def alive(self) -> bool:
        return self.p.poll() is None

    def close(self):
        if self.alive:
            self.p.stdin.close()
            self.p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=2000, help="inputs in all (default: 2000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--codec", nargs="+", help="seed files of these codecs only (default: every golden file)")
    ap.add_argument("--out", default="out/fuzz")
    ap.add_argument("--timeout", type=float, default=TIMEOUT,
                    help=f"seconds one decode may take before it counts as a hang (default: {TIMEOUT:.0f}; "
                         "more on a busy machine)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker()
    sys.path.insert(0, str(ROOT / "src"))
    from neuralcodecs import container, list_codecs

    seeds = {}
    for f in sorted(GOLDEN.glob("*.ncdc")):
        if args.codec and f.stem not in args.codec:
            continue
        data = f.read_bytes()
        h = container.read_header(data)
        seeds[f.stem] = {"name": h.name, "settings": h.settings, "fingerprint": h.fingerprint,
                         "shape": (h.height, h.width, h.channels),
                         "chunks": container.read_chunks(data, h, allow_partial=False)}
    names = list_codecs() + ["nonsense", "JPEG", ""]
    rng = random.Random(args.seed)
    tally: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, list] = defaultdict(list)
    w, start = Worker(args.timeout), time.time()
    order = sorted(seeds)
    for i in range(args.inputs):
        codec = order[i % len(order)]
        parts = mutate(seeds[codec], rng, names)
        for _ in range(rng.choice([0, 0, 0, 1, 2])):  # some inputs carry several mutations
            parts = mutate(parts, rng, names)
        try:
            data = container.pack(parts["name"], parts["settings"], parts["fingerprint"], parts["shape"],
                                  parts["chunks"])
        except (ValueError, UnicodeEncodeError, struct.error, TypeError):
            tally[codec]["unpackable"] += 1
            continue
        result = w.run(data)
        cls = result if result in ("ok", "BitstreamError") else "other"
        tally[codec][cls] += 1
        if cls == "other":
            tally[codec][result.split(":")[0]] += 1
            if len(examples[codec]) < 5:
                examples[codec].append({"result": result, "file": data.hex() if len(data) < 4096 else None})
        if not w.alive:
            w = Worker(args.timeout)
        if (i + 1) % 1000 == 0:
            bad = sum(v["other"] for v in tally.values())
            print(f"{i + 1} inputs, {bad} not ok/BitstreamError, {time.time() - start:.0f} s", flush=True)
    w.close()
    rows = []
    print(f"\n{'codec':20s} {'inputs':>7s} {'ok':>6s} {'Bitstr.':>7s} {'other':>6s}  other kinds")
    for codec in order:
        t = tally[codec]
        n = t["ok"] + t["BitstreamError"] + t["other"]
        kinds = {k: v for k, v in t.items() if k not in ("ok", "BitstreamError", "other", "unpackable")}
        rows.append({"codec": codec, "inputs": n, "ok": t["ok"], "BitstreamError": t["BitstreamError"],
                     "other": t["other"], "other_kinds": kinds, "examples": examples[codec]})
        print(f"{codec:20s} {n:7d} {t['ok']:6d} {t['BitstreamError']:7d} {t['other']:6d}  {kinds or ''}")
    total = {k: sum(r[k] for r in rows) for k in ("inputs", "ok", "BitstreamError", "other")}
    print(f"{'all':20s} {total['inputs']:7d} {total['ok']:6d} {total['BitstreamError']:7d} {total['other']:6d}")
    print(f"{time.time() - start:.0f} s; address-space limit {ALLOC_LIMIT >> 30} GB over the worker's own, "
          f"timeout {args.timeout:.0f} s, decoder pixel limit {MAX_PIXELS}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps({"total": total, "codecs": rows, "seconds": time.time() - start,
                                                "alloc_limit": ALLOC_LIMIT, "timeout": args.timeout,
                                                "max_pixels": MAX_PIXELS, "seed": args.seed}, indent=1))


if __name__ == "__main__":
    main()
