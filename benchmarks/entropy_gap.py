"""What a hyperprior codec's coding leaves on the table, image by image: two changes of the entropy coding
measured by the model's bits (no training, no file written).

    python benchmarks/entropy_gap.py --out DIR [--data DIR] [--codec C] [--limit N] [--qualities 1 4 7 10]

- Scales: y coded with the scale its network predicts (the real-valued index, before rounding to one of the
  LEVELS tabulated scales), and with tables twice as fine (the index rounded to halves), against the
  tabulated scales of the codec. Bits of y's symbols under the bin masses of the codec's conditional (the
  Gaussian's or the logistic's), forward adaptation's shifts applied to every variant.
- z with forward adaptation: per channel the cheapest of the rate points' z tables (FactorizedLatentCodec's
  choices, their side information counted), against the rate point's own tables.
(The bits of forward adaptation's shifts of y's scale indexes are recorded too: y + z + shifts, and one bit that
names the conditional, is the codec's estimate.)

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
from neuralcodecs.entropy.conditional import LEVELS
from neuralcodecs.entropy.latent import FactorizedLatentCodec
from neuralcodecs.eval import list_images

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also when loaded by path
from codec_speed import default_data  # noqa: E402


@torch.no_grad()
def measure(codec, image: np.ndarray, q: int) -> dict[str, float]:
    lc = codec.latent_codec
    log_gain = codec.log_gain[[q]]
    y = codec._analyse(image) * log_gain.exp()[:, :, None, None]
    c = lc._coding(y, q, log_gain)
    predicted = c.predicted.float()
    if c.delta is not None:
        predicted = predicted + torch.from_numpy(c.delta).view(1, -1, 1, 1)
    predicted = predicted.clamp(0, LEVELS - 1)

    def y_bits(index: torch.Tensor) -> float:  # the conditional's bin masses of round(y - mu) (eval mode)
        return float(lc.conditional(y, index, c.mu)[1].sum())

    z_codec = FactorizedLatentCodec(lc.z_priors, forward_adaptive=True)  # z's tables, adaptively chosen
    return {"y_tabulated": y_bits(c.index), "y_predicted_scale": y_bits(predicted),
            "y_half_step_tables": y_bits(torch.floor(predicted * 2 + 0.5) / 2),
            "z": lc.z_priors[q].estimate_bits(c.z), "z_adapted": z_codec.estimate_bits(c.z, q, log_gain),
            "shifts": c.shift_bits}


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
