"""balle2017 with product-quantized transforms: Stock, Joulin, Gribonval, Graham, Jégou, "And the Bit Goes
Down: Revisiting the Quantization of Neural Networks", ICLR 2020, applied to Ballé, Laparra, Simoncelli,
"End-to-end Optimized Image Compression", ICLR 2017 (codecs/balle2017.py).

    weights file (xz-compressed): per conv / deconv layer a codebook of k = 256 codewords (fp16) and one 8-bit
    index per block
      g_a: 9x9 conv in blocks of 3 taps, 5x5 convs in rows of 5 taps
      g_s: 5x5 deconvs in rows of 5 taps, 9x9 deconv single taps (d = 1)
      GDN / IGDN gammas in blocks of 2 inputs; biases, betas and gains in fp16; the coding tables exactly
      its teacher's, balle2017 as shipped when it was made (counts in 16 bits); no density parameters
    -> unpack: weight = codebook[index] per block -> balle2017's network, coding and file format

The bitstream is balle2017's in every respect but the weights' fingerprint: the same tables code the same
kind of latents, and what the quantized transforms change is how good those latents are. `neuralcodecs pq
codec balle2017-pq` makes the weights (EM on calibration crops, then fine-tuning of the codewords on the
rate-distortion loss with the tables frozen, then with the assignments moving too: quant/codec.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..codec import check_index_quality
from ..quant import PQConfig
from ..quant.codec import unpack
from ..registry import register
from .balle2017 import LMBDAS, Balle2017

# The layout: the bytes go where a layer's error costs most (the 9x9 layers, whose whole kernels cost the
# most, in rows of 3 taps or single taps; the 5x5 kernels in rows of 5; the GDN gammas in blocks of 2),
# within 1/8 of balle2017's shipped bytes once xz-compressed. How each choice was measured: README,
# "Our own codec's weights: balle2017-pq".
PQ = PQConfig(codewords=256, sizes=(("g_a.0", 3), ("g_a.2", 5), ("g_a.4", 5), ("g_s.1", 5), ("g_s.3", 5), ("g_s.5", 1)))
GDN_BLOCK = 2


@register("balle2017-pq")
class Balle2017PQ(Balle2017):
    __doc__ = __doc__  # the module's: the papers and the data flow, for help()
    quality_meaning = Balle2017.quality_meaning
    teacher = "balle2017"  # whose shipped weights `neuralcodecs pq codec` quantizes
    pq_config: ClassVar[PQConfig] = PQ
    gdn_block: ClassVar[int] = GDN_BLOCK

    @dataclass(frozen=True)
    class Config(Balle2017.Config):
        def __post_init__(self):
            check_index_quality("balle2017-pq", self.quality, len(LMBDAS))

    def load_weights(self, state: dict[str, torch.Tensor], fingerprint: bytes | None = None) -> None:
        """Shipped weights are quant.codec.pack()'s compact state; a full state (training) loads as it is."""
        if any(k.endswith(".codebook") for k in state):
            state = unpack(self, state)
        super().load_weights(state, fingerprint)
