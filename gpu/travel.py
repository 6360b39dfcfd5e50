"""What travels to a lent GPU, and making it fit: the device tool copies the working tree (tracked files and
untracked ones git does not ignore) and the carried paths, 64 MiB in all, and refuses the call above that.
The shipped weights alone are most of the checkout, so before the call the tracked files the device does not
need (results, docs, tests, benchmarks, and the weights of codecs the plan does not train) leave the working
tree, and come back from git after it:

    python3 gpu/travel.py size      # what would travel now (with .whl/ and gpu-data/), against the limit
    python3 gpu/travel.py slim      # remove what the device does not need (refused if any of it is modified)
    python3 gpu/travel.py restore   # git checkout of what slim removed

`make gpu-slim` / `make gpu-restore` run the last two.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64 * 2 ** 20
CARRY = (".whl", "gpu-data")
LEFT_BEHIND = ("results/", "docs/", "tests/", "benchmarks/")  # tracked folders the device never reads
WEIGHTS = "src/neuralcodecs/weights/"
LIST = ROOT / ".git" / "gpu-slim"  # what slim removed, for restore


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def left_behind() -> list[str]:
    """Tracked files the device does not need: LEFT_BEHIND's and the weights no queued run starts from."""
    sys.path.insert(0, str(ROOT / "gpu"))
    from plan import QUEUE, needed_weights

    manifest = json.loads((ROOT / WEIGHTS / "manifest.json").read_text())
    keep = {WEIGHTS + manifest[c]["file"] for c in needed_weights(QUEUE) if c in manifest}
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
    args = ap.parse_args()
    if args.command == "size":
        now, slim = travelling_bytes(), travelling_bytes(set(left_behind()))
        print(f"travels now: {now / 2**20:.1f} MiB; after slim: {slim / 2**20:.1f} MiB; limit {LIMIT / 2**20:.0f} MiB")
        sys.exit(0 if slim <= LIMIT else 1)
    if args.command == "slim":
        files = left_behind()
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
