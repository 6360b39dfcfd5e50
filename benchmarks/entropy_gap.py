"""What a hyperprior codec's coding leaves on the table, image by image: two changes of the entropy coding
measured by the model's bits (no training, no file written).

    python benchmarks/entropy_gap.py --out DIR [--data DIR] [--codec C] [--limit N] [--qualities 1 4 7 10]

- Scales: y coded with the scale its network predicts (the real-valued index, before rounding to one of the
  LEVELS tabulated scales), and with tables twice as fine (the index rounded to halves), against the
  tabulated scales of the codec. Bits of y's symbols under the Gaussian bin masses, forward adaptation's
  shifts applied to every variant.
- z with forward adaptation: per channel the cheapest of the rate points' z tables (FactorizedLatentCodec's
  choices, their side information counted), against the rate point's own tables.
(The bits of forward adaptation's shifts of y's scale indexes are recorded too: y + z + shifts is the codec's
estimate.)

Images are cut to multiples of 64 pixels from the top left. Prints a table per rate point and writes
entropy_gap.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

import neuralcodecs as nc
from neuralcodecs.entropy.gaussian import LEVELS, _bin_mass, scale_of
from neuralcodecs.entropy.latent import FactorizedLatentCodec
from neuralcodecs.entropy.model import bits_of
from neuralcodecs.eval import list_images
from neuralcodecs.nn.integer import ACT_BITS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also when loaded by path
from codec_speed import default_data  # noqa: E402


def y_bits(s: torch.Tensor, index: torch.Tensor) -> float:
    return float(bits_of(_bin_mass(s, scale_of(index.float()))).sum())


@torch.no_grad()
def measure(codec, image: np.ndarray, q: int) -> dict[str, float]:
    lc = codec.latent_codec
    real = []  # the scale indexes before rounding, as the passes compute them (anchors, then the rest)
    rounding = lc._to_index
    lc._to_index = lambda out: (real.append(out / 2 ** ACT_BITS), rounding(out))[1]
    try:
        log_gain = codec.log_gain[[q]]
        y = codec._analyse(image) * log_gain.exp()[:, :, None, None]
        coding = lc._coding(y, q, log_gain)
    finally:
        del lc._to_index
    if len(coding) == 6:  # a checkerboard context: means, and the indexes of two passes
        z, a, mu, index, delta, shifts = coding
        r = torch.where(a, real[0], real[1])
    else:  # a scale hyperprior
        (z, index, delta, shifts), mu, r = coding, None, real[0]
    if delta is not None:
        r = r + torch.from_numpy(delta).view(1, -1, 1, 1)
    r = r.clamp(0, LEVELS - 1)
    s = torch.round(y - mu) if mu is not None else torch.round(y)
    z_codec = FactorizedLatentCodec(torch.nn.Identity, 0, forward_adaptive=True)  # z's tables, adaptively chosen
    z_codec.priors = lc.z_priors
    return {"y_tabulated": y_bits(s, index), "y_predicted_scale": y_bits(s, r),
            "y_half_step_tables": y_bits(s, torch.floor(r * 2 + 0.5) / 2),
            "z": lc.z_priors[q].estimate_bits(z), "z_adapted": z_codec.estimate_bits(z, q, log_gain),
            "shifts": shifts}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=default_data())
    p.add_argument("--out", type=Path, required=True, help="folder for entropy_gap.json")
    p.add_argument("--codec", default="minnen2018", help="a hyperprior codec (balle2018, minnen2018)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--qualities", type=int, nargs="+", default=[1, 4, 7, 10])
    args = p.parse_args(argv)
    codec = nc.create_codec(args.codec)
    totals = {q: {} for q in args.qualities}
    files = list_images(args.data)[: args.limit]
    for f in files:
        image = nc.load_image(f)
        image = np.ascontiguousarray(image[: image.shape[0] // 64 * 64, : image.shape[1] // 64 * 64, :3])
        for q in args.qualities:
            for k, v in measure(codec, image, q - 1).items():
                totals[q][k] = totals[q].get(k, 0.0) + v
    print(f"{'rate point':>10}{'y bits':>12}{'predicted scale':>17}{'half-step tables':>18}{'z bits':>10}"
          f"{'z adapted':>11}{'z share':>9}")
    for q, t in totals.items():
        print(f"{q:>10}{t['y_tabulated']:>12.0f}{100 * (t['y_predicted_scale'] / t['y_tabulated'] - 1):>+16.2f}%"
              f"{100 * (t['y_half_step_tables'] / t['y_tabulated'] - 1):>+17.2f}%{t['z']:>10.0f}"
              f"{100 * (t['z_adapted'] / t['z'] - 1):>+10.2f}%{100 * t['z'] / (t['z'] + t['y_tabulated']):>8.1f}%")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "entropy_gap.json"
    path.write_text(json.dumps({"data": str(args.data), "images": [Path(f).name for f in files], "codec": args.codec,
                                "neuralcodecs": nc.__version__, "bits": {str(q): t for q, t in totals.items()}},
                               indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
