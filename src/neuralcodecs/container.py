"""The neuralcodecs file format: every codec's output, classical or learned, is one of these.

    offset  size  field
    0       4     magic b"NCDC"
    4       1     format version (1)
    5       1     n = length of the codec name;  then n bytes of ASCII name (never an index into a table)
    .       2     m = length of the settings;    then m bytes of JSON (sorted keys): what decoding needs
    .       1     f = length of the fingerprint; then f bytes (sha256 prefix of the weights; empty for
                  codecs without weights)
    .       4+4+1 image height, width, channels (big-endian u32, u32, u8)
    .       2     number of chunks k
    .       4     CRC-32 of everything above
    then k times: u32 length L, L bytes of chunk data, u32 CRC-32 of the data (seeded with the chunk index,
    so chunks swapped in place are caught too)

A progressive codec writes one chunk per step; a file that ends exactly after chunk j < k is still
valid for it (`truncate` makes such files and rewrites k). Every other deviation raises BitstreamError
with a message saying what is wrong, and the size fields are checked before anything is allocated.
"""
from __future__ import annotations

import json
import numbers
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import BitstreamError
from .image import MAX_SIDE, max_decode_pixels

MAGIC = b"NCDC"
VERSION = 1


@dataclass(frozen=True)
class Header:
    name: str
    settings: dict
    fingerprint: bytes
    height: int
    width: int
    channels: int
    n_chunks: int
    size: int = field(default=0, compare=False)  # bytes the header occupies in the file


def _crc(data: bytes, seed: int = 0) -> int:
    return zlib.crc32(data, seed) & 0xFFFFFFFF


def _plain(value: Any) -> Any:
    """A setting given as a NumPy scalar (quality=np.int64(5) from np.arange, say) as the Python number it is."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"a setting of type {type(value).__name__} cannot be stored in a file")


def pack(name: str, settings: dict, fingerprint: bytes, shape: tuple[int, int, int], chunks: list[bytes]) -> bytes:
    """Assemble a file from the codec's name, settings, weights fingerprint, image shape and chunks."""
    name_b = name.encode("ascii")
    settings_b = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=_plain).encode("utf-8")
    h, w, c = shape
    if len(name_b) > 255 or len(settings_b) > 65535 or len(fingerprint) > 255 or len(chunks) > 65535:
        raise ValueError("codec name, settings, fingerprint or chunk count too long for the file format")
    head = b"".join([
        MAGIC, bytes([VERSION]),
        bytes([len(name_b)]), name_b,
        struct.pack(">H", len(settings_b)), settings_b,
        bytes([len(fingerprint)]), fingerprint,
        struct.pack(">IIBH", h, w, c, len(chunks)),
    ])
    parts = [head, struct.pack(">I", _crc(head))]
    for i, chunk in enumerate(chunks):
        parts += [struct.pack(">I", len(chunk)), chunk, struct.pack(">I", _crc(chunk, i))]
    return b"".join(parts)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise BitstreamError(f"truncated file: it ends inside the {what}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def read_header(data: bytes) -> Header:
    """Parse and check the header; raises BitstreamError on anything that is not a valid header."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise BitstreamError("empty file")
    if not data.startswith(MAGIC[:len(data)]) or len(data) < len(MAGIC):
        if data.startswith(MAGIC[:len(data)]):
            raise BitstreamError("truncated file: it ends inside the magic bytes")
        raise BitstreamError("not a neuralcodecs file (wrong magic bytes)")
    r = _Reader(data)
    r.take(4, "magic")
    version = r.take(1, "header")[0]
    if version != VERSION:
        raise BitstreamError(f"unsupported format version {version} (this library reads version {VERSION})")
    name_b = r.take(r.take(1, "header")[0], "header")
    settings_b = r.take(struct.unpack(">H", r.take(2, "header"))[0], "header")
    fingerprint = r.take(r.take(1, "header")[0], "header")
    h, w, c, k = struct.unpack(">IIBH", r.take(11, "header"))
    (crc,) = struct.unpack(">I", r.take(4, "header"))
    if crc != _crc(data[:r.pos - 4]):
        raise BitstreamError("corrupted file: header checksum mismatch")
    try:
        name = name_b.decode("ascii")
        settings = json.loads(settings_b.decode("utf-8"))
    # ValueError: bad JSON, or an integer of thousands of digits; RecursionError: deeply nested arrays
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BitstreamError("corrupted file: unreadable codec name or settings") from None
    # every setting is a number, a string, a flag or None (pack writes nothing else)
    if not isinstance(settings, dict) or not all(v is None or isinstance(v, (str, int, float)) for v in settings.values()):
        raise BitstreamError("corrupted file: settings are not a mapping of plain values")
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise BitstreamError(f"header claims an image of {w}x{h} pixels, outside what this library decodes")
    if h * w > max_decode_pixels():
        raise BitstreamError(f"header claims an image of {w}x{h} = {h * w} pixels, over the decoder limit of "
                             f"{max_decode_pixels()} (raise it with NEURALCODECS_MAX_PIXELS or set_max_decode_pixels)")
    if c not in (1, 3, 4):
        raise BitstreamError(f"header claims {c} channels (expected 1, 3 or 4)")
    return Header(name, settings, fingerprint, h, w, c, k, size=r.pos)


def read_chunks(data: bytes, header: Header, allow_partial: bool) -> list[bytes]:
    """The chunks after the header, each checked against its CRC. A file that stops exactly at a chunk
    boundary is accepted only when `allow_partial` (progressive codecs) and at least one chunk is there."""
    data = bytes(data)
    r = _Reader(data)
    r.pos = header.size
    chunks = []
    for i in range(header.n_chunks):
        if r.pos == len(data) and allow_partial and chunks:
            break
        (n,) = struct.unpack(">I", r.take(4, f"length of chunk {i + 1} of {header.n_chunks}"))
        if n > len(data) - r.pos:
            raise BitstreamError(f"truncated file: chunk {i + 1} of {header.n_chunks} claims {n} bytes, "
                                 f"{len(data) - r.pos} remain")
        chunk = r.take(n, f"chunk {i + 1}")
        (crc,) = struct.unpack(">I", r.take(4, f"checksum of chunk {i + 1} of {header.n_chunks}"))
        if crc != _crc(chunk, i):
            raise BitstreamError(f"corrupted file: checksum mismatch in chunk {i + 1} of {header.n_chunks}")
        chunks.append(chunk)
    if r.pos != len(data):
        raise BitstreamError(f"corrupted file: {len(data) - r.pos} unexpected bytes after the last chunk")
    return chunks


def truncate(header: Header, chunks: list[bytes], steps: int) -> bytes:
    """Keep the first `steps` of a read file's chunks as a valid file (its chunk count rewritten).
    Only meaningful for progressive codecs; the caller checks that."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= len(chunks):
        raise BitstreamError(f"cannot keep {steps} steps of a file that has {len(chunks)}")
    return pack(header.name, header.settings, header.fingerprint,
                (header.height, header.width, header.channels), chunks[:steps])
