"""What travels to a lent GPU, and making it fit: the device tool copies the working tree (tracked files and
untracked ones git does not ignore) and the carried paths, 64 MiB in all, and refuses the call above that.
The shipped weights alone are most of the checkout, so before the call the tracked files the device does not
need (results, docs, tests, benchmarks, and the weights of codecs the plan neither trains nor encodes with in
gpu/cross_device.py) leave the working tree, and come back from git after it:

    python3 gpu/travel.py size      # what would travel now (with .whl/ and gpu-data/), against the limit
    python3 gpu/travel.py slim      # remove what the device does not need (refused if any of it is modified);
                                    # with --codec A B: what `plan.py --codec A B` needs stays
    python3 gpu/travel.py restore   # git checkout of what slim removed

`make gpu-slim` / `make gpu-restore` run the last two.
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "gpu"))
from plan import needed_weights, select, weight_files  # noqa: E402  (the sibling script; it imports no package)

LIMIT = 64 * 2 ** 20
CARRY = (".whl", "gpu-data")
LEFT_BEHIND = ("results/", "docs/", "tests/", "benchmarks/")  # tracked folders the device never reads
WEIGHTS = "src/neuralcodecs/weights/"
LIST = ROOT / ".git" / "gpu-slim"  # what slim removed, for restore


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def cross_device_codecs() -> tuple[str, ...]:
    """gpu/cross_device.py's CODECS, read without importing it (it imports torch; this runs under any python3)."""
    tree = ast.parse((ROOT / "gpu" / "cross_device.py").read_text())
    return next(ast.literal_eval(n.value) for n in tree.body
                if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "CODECS" for t in n.targets))


def needed_codecs(codecs: list[str] | None = None) -> set[str]:
    """The codecs whose shipped weights the device reads: those the plan's runs start from (its QUEUE, or
    `plan.py --codec`'s codecs) and those gpu/cross_device.py encodes with before training."""
    return needed_weights(select(codecs)) | set(cross_device_codecs())


def left_behind(codecs: list[str] | None = None) -> list[str]:
    """Tracked files the device does not need: LEFT_BEHIND's and the weights of codecs it does not read."""
    manifest = json.loads((ROOT / WEIGHTS / "manifest.json").read_text())
    keep = {WEIGHTS + f for c in needed_codecs(codecs) if c in manifest for f in weight_files(manifest[c])}
    return [f for f in _git("ls-files", "-z").split("\0") if f and (
        f.startswith(LEFT_BEHIND) or (f.startswith(WEIGHTS) and "/" not in f[len(WEIGHTS):]
                                       and not f.endswith((".json", ".py")) and f not in keep))]


def travelling_bytes(without: set[str] = frozenset()) -> int:
    """Bytes of what travels now: tracked and untracked-not-ignored files present, and the carried paths."""
    files = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    total = sum((ROOT / f).stat().st_size for f in files if f and f not in without and (ROOT / f).is_file())
    for c in CARRY:
        total += sum(p.stat().st_size for p in (ROOT / c).rglob("*") if p.is_file())
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["size", "slim", "restore"])
    ap.add_argument("--codec", nargs="+", help="the codecs `plan.py --codec` will train (default: its QUEUE)")
    args = ap.parse_args()
    if args.command == "size":
        now, slim = travelling_bytes(), travelling_bytes(set(left_behind(args.codec)))
        print(f"travels now: {now / 2**20:.1f} MiB; after slim: {slim / 2**20:.1f} MiB; limit {LIMIT / 2**20:.0f} MiB")
        sys.exit(0 if slim <= LIMIT else 1)
    if args.command == "slim":
        files = left_behind(args.codec)
        changed = [f for f in _git("status", "--porcelain", "-z", "--", *files).split("\0") if f]
        if changed:
            sys.exit(f"not removed: these have changes git does not hold: {changed[:5]}")
        LIST.write_text("\n".join(files))
        for f in files:
            (ROOT / f).unlink(missing_ok=True)
        print(f"removed {len(files)} tracked files; {travelling_bytes() / 2**20:.1f} MiB travel now "
              f"(`python3 gpu/travel.py restore` after the call)")
    else:
        files = LIST.read_text().split("\n") if LIST.exists() else []
        if files:
            _git("checkout", "--", *files)
        LIST.unlink(missing_ok=True)
        print(f"restored {len(files)} files")


if __name__ == "__main__":
    main()
