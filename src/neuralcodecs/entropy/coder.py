"""The one thin wrapper over a real entropy coder: constriction's range coder.

Every codec that entropy-codes goes through `Encoder` / `Decoder`, so a file's bytes are always produced
by real arithmetic coding, never estimated. Models are categorical distributions given as probability
tables; callers build them from integers or stored tables so that encoder and decoder see exactly the
same floats (constriction then quantizes them deterministically).
"""
from __future__ import annotations

import constriction
import numpy as np

from ..errors import BitstreamError

_Categorical = constriction.stream.model.Categorical


def _pmf(pmf: np.ndarray) -> np.ndarray:
    pmf = np.asarray(pmf, dtype=np.float64)
    if pmf.ndim not in (1, 2) or pmf.shape[-1] < 1:
        raise ValueError(f"pmf must be 1-D (shared) or 2-D (one row per symbol), got shape {pmf.shape}")
    return pmf


class Encoder:
    """Queue-order (first in, first out) range encoder: decode in the order you encoded."""

    def __init__(self) -> None:
        self._enc = constriction.stream.queue.RangeEncoder()

    def categorical(self, symbols: np.ndarray, pmf: np.ndarray) -> None:
        """Code integer symbols in [0, K) with one shared K-entry pmf (1-D) or one pmf row per symbol (2-D)."""
        symbols = np.ascontiguousarray(symbols, dtype=np.int32).ravel()
        pmf = _pmf(pmf)
        if symbols.size == 0:
            return
        k = pmf.shape[-1]
        if symbols.min() < 0 or symbols.max() >= k:
            raise ValueError(f"symbols outside the model's alphabet [0, {k})")
        if pmf.ndim == 1:
            self._enc.encode(symbols, _Categorical(pmf, perfect=False))
        else:
            self._enc.encode(symbols, _Categorical(perfect=False), pmf)

    def to_bytes(self) -> bytes:
        return self._enc.get_compressed().tobytes()


class Decoder:
    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise BitstreamError("corrupted entropy-coded data (length is not a whole number of words)")
        self._dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype=np.uint32).copy())

    def categorical(self, n: int, pmf: np.ndarray) -> np.ndarray:
        pmf = _pmf(pmf)
        if n == 0:
            return np.zeros(0, np.int32)
        if pmf.ndim == 1:
            return self._dec.decode(_Categorical(pmf, perfect=False), n)
        return self._dec.decode(_Categorical(perfect=False), pmf)


def pmf_from_counts(counts: np.ndarray) -> np.ndarray:
    """Stored integer counts -> float64 probabilities, identically in encoder and decoder."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts / counts.sum(axis=-1, keepdims=True)


def information_bits(symbols: np.ndarray, pmf: np.ndarray) -> float:
    """The information content -sum log2 p(symbol) the coder should approach (for tests and reports)."""
    symbols = np.asarray(symbols).ravel()
    pmf = _pmf(pmf)
    p = pmf[symbols] if pmf.ndim == 1 else pmf[np.arange(len(symbols)), symbols]
    p = p / (pmf.sum() if pmf.ndim == 1 else pmf.sum(axis=1))
    return float(-np.log2(p).sum())
