"""Compression of network weights: product quantization (Stock et al., "And the Bit Goes Down", ICLR 2020)."""
from .pq import PQConfig, load, quantize, save

__all__ = ["PQConfig", "quantize", "save", "load"]
