"""Bit-exact entropy parameters across devices: a file encoded on a GPU must decode on a CPU (any thread count)
to exactly the latents the encoder quantized, so that only the float synthesis may differ.

    on the GPU:  python3 gpu/cross_device.py encode --out $OUT       (cuda if present, else the CPU)
    here:        .venv/bin/python gpu/cross_device.py check DIR       (DIR: what came back)

For each hyperprior codec (balle2018, minnen2018) and rate point, with the shipped weights or, where none ship
yet, a seeded untrained model with its tables built (the same weights on both machines: initialized on the
CPU, then moved), `encode` writes the file and the encoder's y_hat; `check` decodes every file on the CPU with
1 and 2 threads and requires y_hat to be identical (the float synthesis of it is then the CPU's own). Each
model's fingerprint travels too: `check` refuses to compare files of other weights than the ones it has (a
mismatch would say nothing about devices), and counts a file it cannot decode as a failure. Everything goes
in one file, OUT/cross_device.npz (the device returns at most 8 files).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CODECS = ("balle2018", "minnen2018")
QUALITIES = (2, 6, 10)


def model(name: str, quality: int, device: str):
    import neuralcodecs as nc
    from neuralcodecs.registry import get_entry

    cls = get_entry(name).cls
    if cls.trained(name):
        m = nc.create_codec(name, quality=quality)
    else:
        torch.manual_seed(0)
        m = cls.for_training(name=name, quality=quality)
        m.update_tables()
        m.eval()
    return m.to(device)


def image() -> np.ndarray:
    import neuralcodecs as nc

    return np.ascontiguousarray(nc.load_image(ROOT / "samples" / "kodim23.png")[:256, :384])


@torch.no_grad()
def encode(out: Path) -> None:
    from neuralcodecs.image import pad

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out.mkdir(parents=True, exist_ok=True)
    x = pad(image(), 64)
    arrays, files, fingerprints = {}, {}, {}
    for name in CODECS:
        for q in QUALITIES:
            m = model(name, q, device)
            y = m.latents(x)
            chunks = m.latent_codec.compress(y, q - 1, m.log_gain[[q - 1]])
            # the encoder's y_hat: what the decoder must reproduce (the file's own decode on this device)
            y_hat = m.latent_codec.decompress(chunks, tuple(y.shape), q - 1, m.log_gain[[q - 1]])
            arrays[f"{name}-{q}"] = y_hat.cpu().numpy()
            fingerprints[f"fingerprint/{name}-{q}"] = np.frombuffer(m.fingerprint, np.uint8)
            files[f"{name}-{q}"] = [c.hex() for c in chunks]
    chunks = {f"chunks/{k}/{i}": np.frombuffer(bytes.fromhex(h), np.uint8) for k, v in files.items()
              for i, h in enumerate(v)}
    np.savez(out / "cross_device.npz", device=np.array(device), **{f"y_hat/{k}": v for k, v in arrays.items()},
             **chunks, **fingerprints)
    print(f"encoded {len(files)} files on {device}")


_DECODE = """
import sys, json, numpy as np, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(int(sys.argv[3]))
from cross_device import model
data = np.load(sys.argv[2] + "/cross_device.npz")
keys = sorted(k[6:] for k in data.files if k.startswith("y_hat/"))
bad, other_weights, errors = [], [], {}
with torch.no_grad():
    for key in keys:
        name, q = key.rsplit("-", 1)
        m = model(name, int(q), "cpu")
        if data[f"fingerprint/{key}"].tobytes() != m.fingerprint:
            other_weights.append(key)
            continue
        try:
            chunks = [data[f"chunks/{key}/{i}"].tobytes() for i in range(m.latent_codec.n_strings)]
            ref = data[f"y_hat/{key}"]
            y_hat = m.latent_codec.decompress(chunks, ref.shape, int(q) - 1, m.log_gain[[int(q) - 1]]).numpy()
        except Exception as e:  # a desynchronized range decoder fails in many ways: each is this file's failure
            errors[key] = f"{type(e).__name__}: {e}"[:200]
            continue
        if not np.array_equal(y_hat, ref):
            bad.append(key)
print(json.dumps({"encoded_on": str(data["device"]), "threads": int(sys.argv[3]), "files": len(keys),
                  "mismatched": bad, "errors": errors, "other_weights": other_weights}))
"""


def check(folder: Path) -> bool:
    ok = True
    for threads in (1, 2):
        res = subprocess.run([sys.executable, "-c", _DECODE, str(ROOT / "gpu"), str(folder), str(threads)],
                             capture_output=True, text=True)
        if res.returncode:
            print(f"the check itself failed with {threads} thread(s):\n{res.stderr[-2000:]}")
            return False
        report = json.loads(res.stdout.strip().splitlines()[-1])
        print(report)
        if report["other_weights"]:
            print("files of other weights than this checkout's: check them with the weights they were encoded with")
        ok &= not (report["mismatched"] or report["errors"] or report["other_weights"])
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("encode").add_argument("--out", required=True)
    sub.add_parser("check").add_argument("folder")
    args = ap.parse_args()
    if args.cmd == "encode":
        encode(Path(args.out))
    else:
        sys.exit(0 if check(Path(args.folder)) else 1)


if __name__ == "__main__":
    main()
