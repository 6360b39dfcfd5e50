"""The GPU plan: what a lent GPU trains, in one command, so that no device minute goes to set-up.

On the device (see the Makefile's gpu-* targets and README "Training on a lent GPU"):
    python3 gpu/plan.py --minutes 11 --out $OUT
installs the carried wheels (.whl/, made here by `make gpu-wheels`) into /tmp/site, unpacks the carried
training patches (gpu-data/patches.npz, made here by `make gpu-data`), then trains every codec of QUEUE at
once on the one GPU (each its own process; the 16 CPU cores decode and crop), each from its latest shipped
weights, for the given minutes; `timeout` sends TERM, the loop checkpoints, and each run's weights are
exported in half precision with a manifest entry into OUT/weights (no Kodak measurement there: that runs back
here). OUT/plan.json records steps, steps/s, the last logged loss, bpp and PSNR and the end of the log of every
run; OUT/cross_device.npz holds files encoded there for `gpu/cross_device.py check`; runs and checkpoints stay in
--work (the device returns at most 8 files).

    python3 gpu/plan.py --dry-run --out /tmp/plan     # the same on the CPU, a few steps each (a test runs it)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOREVER = 10 ** 9  # steps: the time limit ends every run

# codec, its training options on an H200. Whatever GPU time comes goes first to the codecs farthest from their
# papers (toderici2017, toderici2016), then to the hyperprior codecs, then the others. Each starts from its own
# shipped weights (a codec without any would start from the nearest trained one's, `--init codec:NAME`, as
# minnen2018 started from balle2018's).
QUEUE = [
    ("toderici2017", ["--crop", "64", "--batch", "32", "--lr", "5e-4", "--init", "shipped"]),
    ("toderici2016", ["--crop", "32", "--batch", "128", "--lr", "5e-4", "--init", "shipped"]),
    ("balle2018", ["--crop", "256", "--batch", "16", "--lr", "1e-4", "--entropy-lr", "1e-3", "--init", "shipped"]),
    ("minnen2018", ["--crop", "256", "--batch", "16", "--lr", "1e-4", "--entropy-lr", "1e-3", "--init", "shipped"]),
    ("balle2017", ["--crop", "256", "--batch", "16", "--lr", "5e-5", "--init", "shipped"]),
]
# Not in the default queue, to keep what the device returns within its 8 files (and theis2017 is nearest its
# target): `--codec theis2017` trains it instead of others.
EXTRA = [
    ("theis2017", ["--crop", "128", "--batch", "32", "--lr", "5e-5", "--entropy-lr", "1e-3", "--init", "shipped",
                   "--stage", "joint"]),
]


def install_wheels(site: Path) -> None:
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if wheels:
        res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                              "--target", str(site), *map(str, wheels)], capture_output=True, text=True)
        if res.returncode:  # e.g. wheels for the device's Python on this machine: what is installed here is used
            print(f"carried wheels not installed ({res.stderr.strip().splitlines()[-1] if res.stderr else ''})",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=11.0, help="training time of every run")
    ap.add_argument("--out", required=True)
    ap.add_argument("--codec", nargs="+", help="a subset of the queue")
    ap.add_argument("--dry-run", action="store_true", help="CPU, 2 steps each, tiny crops: checks the whole plan")
    ap.add_argument("--data", help="a folder of training images (default: the carried patches)")
    ap.add_argument("--work", default="/tmp/gpu-plan", help="runs and checkpoints")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    site = Path("/tmp/site")
    install_wheels(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "NEURALCODECS_WEIGHTS": str(out / "weights"), "PYTHONUNBUFFERED": "1"}
    queue = [(c, a) for c, a in QUEUE + EXTRA if (c in args.codec if args.codec else (c, a) in QUEUE)]
    # first, seconds of it: files encoded here for gpu/cross_device.py check (bit-exact decoding on a CPU)
    subprocess.run([sys.executable, str(ROOT / "gpu" / "cross_device.py"), "encode", "--out", str(out)],
                   env=env, cwd=ROOT, check=False)
    # the runs start from the package's weights: the manifest and the files the queue needs (its codecs' own and
    # those named by --init codec:NAME) are copied where the exports go
    shipped = ROOT / "src" / "neuralcodecs" / "weights"
    manifest = json.loads((shipped / "manifest.json").read_text())
    needed = {c for c, _ in queue} | {a[a.index("--init") + 1][6:] for _, a in queue
                                       if "--init" in a and a[a.index("--init") + 1].startswith("codec:")}
    weights_out = out / "weights"
    weights_out.mkdir(exist_ok=True)
    (weights_out / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k in needed}, indent=2))
    for name in needed & set(manifest):
        (weights_out / manifest[name]["file"]).write_bytes((shipped / manifest[name]["file"]).read_bytes())
    work = Path(args.work)
    if args.data:
        data = Path(args.data)
    else:
        sys.path.insert(0, str(ROOT / "gpu"))
        from make_data import unpack

        data = unpack(ROOT / "gpu-data" / "patches.npz", Path("/tmp/gpu-data"))
    procs, t0 = [], time.time()
    for codec, extra in queue:
        run = work / codec
        cmd = [sys.executable, "-m", "neuralcodecs.cli", "train", codec, "--data", str(data), "--out", str(run),
               "--checkpoint-minutes", "2", *extra]
        if args.dry_run:
            cmd += ["--steps", "2", "--device", "cpu", "--threads", "1", "--crop", "32", "--batch", "2"]
            limit = []
        else:
            cmd += ["--steps", str(FOREVER), "--device", "cuda", "--threads", "2"]
            limit = ["timeout", "--signal=TERM", "--kill-after=60", f"{int(args.minutes * 60)}"]
        run.mkdir(parents=True, exist_ok=True)
        log = open(run / "train.log", "w")
        procs.append((codec, run, subprocess.Popen(limit + cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)))
    report = {"minutes": args.minutes, "dry_run": args.dry_run, "runs": {}}
    for codec, run, p in procs:
        code = p.wait()
        rows = (run / "log.csv").read_text().splitlines()[1:] if (run / "log.csv").exists() else []
        last = dict(zip(["step", "loss", "bpp", "psnr"], map(float, rows[-1].split(",")))) if rows else {}
        seconds = args.minutes * 60 if not args.dry_run else time.time() - t0  # each run trains for the limit
        entry = {"exit": code, "steps": len(rows), "steps_per_s": round(len(rows) / max(seconds, 1e-9), 2),
                 **{f"last_{k}": v for k, v in last.items()}}
        if (run / "checkpoint.pt").exists():
            exp = subprocess.run([sys.executable, "-m", "neuralcodecs.cli", "export", str(run),
                                  "--command-line", f"gpu/plan.py {codec} {args.minutes} min"],
                                 env=env, cwd=ROOT, capture_output=True, text=True)
            entry["exported"] = exp.returncode == 0
            if exp.returncode:
                entry["export_error"] = exp.stderr[-500:]
        report["runs"][codec] = entry
        print(codec, json.dumps(entry), flush=True)
        entry["log_tail"] = (run / "train.log").read_text()[-3000:]
    (out / "plan.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
