"""Write the golden files: for each codec named (or, with --all, every ready codec), a small file encoded now
and the exact pixels it decodes to (PNG). tests/test_golden.py decodes every file here forever after, and
encodes the golden image again to the same bytes, so a change to the file format, a coder or shipped weights
fails loudly instead of passing silently.

Run it only to add a golden file for a new codec, or when a change of format is meant (then say so in the
commit):  .venv/bin/python tests/golden/make_golden.py CODEC [CODEC ...]   (or --all: every ready codec)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import neuralcodecs as nc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# settings that keep a slow encoder quick; they are stored in the file like any other
FAST = {"coconet": {"iterations": 300, "compile": False}}


def golden_image() -> np.ndarray:
    """37x53 crop of the shipped sample: odd sides, so every codec's padding and cropping take part."""
    return np.ascontiguousarray(nc.load_image(ROOT / "samples" / "kodim23.png")[211:248, 317:370])


def main(names: list[str]) -> None:
    if not names:
        # regenerating everything needs --all: it would erase the evidence of an unmeant change
        sys.exit("usage: .venv/bin/python tests/golden/make_golden.py CODEC [CODEC ...] | --all")
    x = golden_image()
    for name in nc.list_codecs(ready=True) if names == ["--all"] else names:
        data = nc.create_codec(name, **FAST.get(name, {})).encode(x)
        (HERE / f"{name}.ncdc").write_bytes(data)
        nc.save_image(HERE / f"{name}.png", nc.decode(data))
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
