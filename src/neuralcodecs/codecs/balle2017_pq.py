"""balle2017 with product-quantized transforms: Stock, Joulin, Gribonval, Graham, Jégou, "And the Bit Goes
Down: Revisiting the Quantization of Neural Networks", ICLR 2020, applied to Ballé, Laparra, Simoncelli,
"End-to-end Optimized Image Compression", ICLR 2017 (codecs/balle2017.py).

    weights file (xz-compressed): per conv / deconv layer a codebook of k = 256 codewords (fp16) and one 8-bit
    index per block
      g_a: 9x9 conv in blocks of 3 taps, 5x5 convs in rows of 5 taps
      g_s: 5x5 deconvs in rows of 5 taps, 9x9 deconv single taps (d = 1)
      GDN / IGDN gammas in blocks of 2 inputs; biases, betas and gains in fp16; the coding tables exactly
      balle2017's (counts in 16 bits); no density parameters
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

# Block sizes from each layer's cost alone, EM only, as PSNR of the decoded crops against balle2017's at
# rate point 8 (12 crops): the 9x9 layers in blocks of 9 taps 29.1 (g_a.0) and 29.2 dB (g_s.5), of 3 taps
# 33.1 / 33.1 dB, single taps (g_s.5) 46.9 dB; 5x5 kernels whole: g_a.2 30.3, g_a.4 27.2, g_s.1 26.4,
# g_s.3 30.1 dB. The shipped file (xz-compressed since the tables went into it exactly) may hold 1/8 of
# balle2017's shipped file's bytes (621 KB), the coding tables (143 KB unpacked) included:
# with every 5x5 layer whole and the GDNs at 8 bits (140 KB) the fine-tuning stalled 1.5 dB under balle2017
# on training crops, so the GDNs went to blocks of 4 and the bytes to rows of 5 taps in three of the four 5x5
# layers (616 KB; Kodak BD-rate -25.2 % against jpeg). xz shrinks the tables ~4x (to 494 KB), and the bytes
# freed went to the fourth 5x5 layer (g_a.2) in rows of 5 taps and the GDNs in blocks of 2: 700 KB, 577 KB
# compressed, -25.9 %. Then fine-tuned further with the assignments moving (pq codec --from FILE
# --reassign-every 20, 9000 steps, then 5000 and 5000 at lower rates, then 8000 on 256x256 crops): the same
# layout, 566 KB compressed, -32.0 %.
# (512 codewords for g_a.4 and g_s.1, 9-bit indices, from the EM with the assignments moving: 613 KB,
# -28.6 %; not kept.)
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
