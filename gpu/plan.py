"""The GPU plan: what a lent GPU trains, in one command, so that no device minute goes to set-up.

On the device (see the Makefile's gpu-* targets and README "Training on a lent GPU"), one command run with the
device tool's largest timeout, 600 s:
    python3 gpu/plan.py --seconds 540 --out $OUT
installs the carried wheels (.whl/, made here by `make gpu-wheels`) into /tmp/site, copies the shipped weights
the queue needs and the whole manifest into OUT/weights, encodes the files of `gpu/cross_device.py` with the
shipped weights, unpacks the carried training patches (gpu-data/patches.npz, made here by `make gpu-data`), then
trains every codec of QUEUE at once on the one GPU (each its own process), each from its latest shipped weights,
until EXPORT_RESERVE seconds before the deadline; `timeout` sends TERM, the loop checkpoints, and the runs'
weights are exported one after another as they would ship (a fine-tune as the mean of its snapshots, an update of
the shipped file; the others in 8 bits: export_options; the checkpoints stay on the device) with their manifest
entries, into OUT/weights (no Kodak measurement there: that runs back here); the shipped files copied there for
the runs to start from are removed again.
OUT/plan.json records steps, steps/s, the last logged loss, bpp and PSNR and the end of the log of every run,
rewritten as each export ends, so a command killed at the deadline still returns what finished; runs and
checkpoints stay in --work (the device returns at most 8 files).

    python3 gpu/plan.py --dry-run --out /tmp/plan     # the same on the CPU, a few steps each (a test runs it)
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOREVER = 10 ** 9  # steps: the time limit ends every run
# seconds kept after training for TERM's checkpoint (a step and a save) and the exports (seconds each)
EXPORT_RESERVE = 75

# codec, its training options on an H200. Whatever GPU time comes goes to the codecs farthest from their targets:
# toderici2017 and toderici2016 (issue 30), then minnen2018 (issue 29). Each starts from its own shipped weights (a
# codec without any would start from the nearest trained one's, `--init codec:NAME`, as minnen2018 started from
# balle2018's). Fewer runs give each a larger share of the one GPU, and the weights left behind leave room for
# more training data in the 64 MiB that travel (gpu/make_data.py MAX_MIB).
QUEUE = [
    ("toderici2017", ["--crop", "64", "--batch", "32", "--lr", "5e-4", "--init", "shipped"]),
    ("toderici2016", ["--crop", "32", "--batch", "128", "--lr", "5e-4", "--init", "shipped"]),
    # at the learning rates of its CPU fine-tunes: ten times these left it worse (README, "Training on a lent GPU")
    ("minnen2018", ["--crop", "256", "--batch", "16", "--lr", "1e-5", "--entropy-lr", "1e-4", "--init", "shipped",
                    "--snapshot-every", "250"]),
]
# A run that keeps snapshots (`--snapshot-every`) is a fine-tune of its shipped weights: its export ships the mean
# of its snapshots and its last weights (`export --average`: a fine-tune at a low rate wanders around its minimum,
# the mean does not, and the device cannot measure which point to keep; README, "Weight averaging") as an update
# of the shipped file (`export --base`: ~2 MB of 4-bit differences, where a new file would add 7-14 MB to a
# repository that keeps every version). The others ship whole, in 8 bits.
# At their targets already (README, "Results on Kodak"): `--codec NAME` trains them instead
# (`gpu/travel.py slim --codec NAME` keeps their weights), at the learning rates their CPU
# fine-tuning runs with.
EXTRA = [
    ("balle2018", ["--crop", "256", "--batch", "16", "--lr", "1e-5", "--entropy-lr", "1e-4", "--init", "shipped",
                   "--snapshot-every", "250"]),
    ("balle2017", ["--crop", "256", "--batch", "16", "--lr", "1e-5", "--entropy-lr", "1e-4", "--init", "shipped",
                   "--snapshot-every", "250"]),
    ("theis2017", ["--crop", "128", "--batch", "32", "--lr", "2e-5", "--entropy-lr", "2e-4", "--init", "shipped",
                   "--stage", "joint", "--snapshot-every", "250"]),
]


def export_options(codec: str, options: list[str], run: Path, step: int, manifest: dict) -> list[str]:
    """How a run whose checkpoint is at `step` ships: a fine-tune (one that keeps snapshots) as the mean of its
    snapshots and last weights, an update of the shipped file (of the file an update of them updates); any other
    whole, in 8 bits."""
    if "--snapshot-every" not in options:
        return ["--int8"]
    entry = manifest[codec]
    last = run / "snapshots" / f"step-{step:07d}.pt"  # a snapshot of the last weights would count twice
    snapshots = [str(p) for p in sorted((run / "snapshots").glob("*.pt")) if p != last]
    return ["--base", entry.get("base", entry["file"]), *(["--average", *snapshots] if snapshots else [])]


def select(codecs: list[str] | None) -> list:
    """The runs: QUEUE, or the named codecs of QUEUE and EXTRA (any other name stops it: a typo trains nothing)."""
    unknown = set(codecs or ()) - {c for c, _ in QUEUE + EXTRA}
    if unknown:
        sys.exit(f"not in gpu/plan.py's QUEUE or EXTRA: {sorted(unknown)}")
    return [(c, a) for c, a in QUEUE + EXTRA if (c in codecs if codecs else (c, a) in QUEUE)]


def needed_weights(queue: list) -> set[str]:
    """The codecs whose shipped weights the queue starts from: its own and those `--init codec:NAME` names."""
    inits = [a[a.index("--init") + 1].split(",") for _, a in queue if "--init" in a]
    return {c for c, _ in queue} | {s[6:] for sources in inits for s in sources if s.startswith("codec:")}


def weight_files(entry: dict) -> list[str]:
    """The files a manifest entry loads: its own, and the base file an update of it loads with."""
    return [f for f in (entry["file"], entry.get("base")) if f]


def install_wheels(site: Path, env: dict) -> None:
    """The carried wheels into `site`. If pip refuses them (this machine's Python is not the device's: the dry
    run), what is installed here serves, provided the training path imports; otherwise stop at once, before a
    minute of the GPU is spent on runs that would all fail."""
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if wheels:
        res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                              "--target", str(site), *map(str, wheels)], capture_output=True, text=True)
        if res.returncode:
            print(f"carried wheels not installed ({res.stderr.strip().splitlines()[-1] if res.stderr else ''})",
                  flush=True)
    probe = subprocess.run([sys.executable, "-c", "import constriction, neuralcodecs.train.loop"], env=env, cwd=ROOT,
                           capture_output=True, text=True)
    if probe.returncode:
        sys.exit(f"the training path does not import here: {probe.stderr.strip().splitlines()[-1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=540.0,
                    help="the whole command's wall time; training ends EXPORT_RESERVE s before it")
    ap.add_argument("--out", required=True)
    ap.add_argument("--codec", nargs="+", help="these codecs of QUEUE and EXTRA instead of QUEUE")
    ap.add_argument("--dry-run", action="store_true", help="CPU, 2 steps each, tiny crops: checks the whole plan")
    ap.add_argument("--data", help="a folder of training images (default: the carried patches)")
    ap.add_argument("--work", default="/tmp/gpu-plan", help="runs and checkpoints")
    args = ap.parse_args()
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    site = Path("/tmp/site")
    shipped_env = {**os.environ, "PYTHONUNBUFFERED": "1",
                   "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    shipped_env.pop("NEURALCODECS_WEIGHTS", None)  # the package's own weights
    env = {**shipped_env, "NEURALCODECS_WEIGHTS": str(out / "weights")}
    install_wheels(site, shipped_env)
    queue = select(args.codec)
    # the runs start from the package's weights: the files the queue needs are copied where the exports go, with
    # the whole manifest, so that OUT/weights can be copied back over the package's without losing an entry
    shipped = ROOT / "src" / "neuralcodecs" / "weights"
    manifest = json.loads((shipped / "manifest.json").read_text())
    weights_out = out / "weights"
    weights_out.mkdir(exist_ok=True)
    (weights_out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for name in needed_weights(queue) & set(manifest):
        for file in weight_files(manifest[name]):
            (weights_out / file).write_bytes((shipped / file).read_bytes())
    # seconds of it: files encoded here with the shipped weights, for gpu/cross_device.py check back home
    subprocess.run([sys.executable, str(ROOT / "gpu" / "cross_device.py"), "encode", "--out", str(out)],
                   env=shipped_env, cwd=ROOT, check=False)
    work = Path(args.work)
    if args.data:
        data = Path(args.data)
    else:
        sys.path.insert(0, str(ROOT / "gpu"))
        from make_data import unpack

        data = unpack(ROOT / "gpu-data" / "patches.npz", Path("/tmp/gpu-data"))
    train_seconds = int(t0 + args.seconds - EXPORT_RESERVE - time.time())
    if not args.dry_run and train_seconds < 30:
        sys.exit(f"set-up left {train_seconds} s of training: give --seconds more")
    procs, t_train = [], time.time()
    for codec, extra in queue:
        run = work / codec
        cmd = [sys.executable, "-m", "neuralcodecs.cli", "train", codec, "--data", str(data), "--out", str(run),
               "--checkpoint-minutes", "2", *extra]
        if args.dry_run:
            cmd += ["--steps", "2", "--device", "cpu", "--threads", "1", "--crop", "32", "--batch", "2"]
            cmd += ["--snapshot-every", "1"] if "--snapshot-every" in extra else []  # so that the averaging runs
            limit = []
        else:
            cmd += ["--steps", str(FOREVER), "--device", "cuda", "--threads", "2"]
            limit = ["timeout", "--signal=TERM", f"--kill-after={EXPORT_RESERVE // 2}", str(train_seconds)]
        run.mkdir(parents=True, exist_ok=True)
        log = open(run / "train.log", "w")
        procs.append((codec, run, subprocess.Popen(limit + cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)))
    report = {"seconds": args.seconds, "train_seconds": train_seconds, "dry_run": args.dry_run, "runs": {}}
    for codec, run, p in procs:
        code = p.wait()
        rows = list(csv.DictReader(open(run / "log.csv"))) if (run / "log.csv").exists() else []
        last = {k: float(v) for k, v in rows[-1].items()} if rows else {}
        # timeout's 124: it ran to the limit; otherwise it ended (or failed) early, and its own time counts
        seconds = train_seconds if code == 124 else time.time() - t_train
        entry = {"exit": code, "steps": len(rows), "steps_per_s": round(len(rows) / max(seconds, 1e-9), 2),
                 **{f"last_{k}": v for k, v in last.items()}}
        # one after another (each rewrites the manifest; seconds each), plan.json rewritten after each, so that a
        # command killed at the deadline returns what finished
        if (run / "checkpoint.pt").exists():
            how = export_options(codec, dict(queue)[codec], run, int(last.get("step", 0)), manifest)
            what = f"gpu/plan.py {codec}: {len(rows)} steps on the GPU in {train_seconds} s"
            if "--average" in how:  # the snapshots after the option, and the last weights
                what += f", the mean of {len(how) - how.index('--average')} points"
            exp = subprocess.run([sys.executable, "-m", "neuralcodecs.cli", "export", str(run), *how,
                                  "--command-line", what], env=env, cwd=ROOT, capture_output=True, text=True)
            entry["exported"] = exp.returncode == 0
            if exp.returncode:
                entry["export_error"] = exp.stderr[-500:]
        report["runs"][codec] = entry
        print(codec, json.dumps(entry), flush=True)
        # the end of the log without tqdm's redrawn bars (carriage returns): the lines a reader wants
        lines = (run / "train.log").read_text().replace("\r", "\n").splitlines()
        entry["log_tail"] = "\n".join(line for line in lines if "it/s]" not in line and "s/it]" not in line)[-3000:]
        (out / "plan.json").write_text(json.dumps(report, indent=1))
        # the shipped files copied for the runs to start from (an update's base among them) need not travel back,
        # and must not take the device's 8 files from the exports if the command is killed at its deadline: each
        # goes once the runs that load it have exported (an update loads its base: that one is kept for them)
        pending = {c for c, _, _ in procs[procs.index((codec, run, p)) + 1:]}
        needed = {f for c in pending & set(manifest) for f in weight_files(manifest[c])}
        for file in weights_out.iterdir():
            if file.name != "manifest.json" and file.name not in needed and (shipped / file.name).exists() and \
                    file.read_bytes() == (shipped / file.name).read_bytes():
                file.unlink()


if __name__ == "__main__":
    main()
