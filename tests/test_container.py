"""The file format: header fields, chunk framing, checks before allocation, truncation."""
import struct

import numpy as np
import pytest

import neuralcodecs as nc
from neuralcodecs import container


def _file(chunks=(b"abc", b"defg"), name="fmm", settings=None, shape=(8, 8, 3)):
    return container.pack(name, settings or {"quality": 5, "entropy": False}, b"", shape, list(chunks))


def test_header_round_trip():
    data = _file()
    h = container.read_header(data)
    assert (h.name, h.height, h.width, h.channels, h.n_chunks) == ("fmm", 8, 8, 3, 2)
    assert container.read_chunks(data, h, allow_partial=False) == [b"abc", b"defg"]


@pytest.mark.parametrize("data,msg", [(b"", "empty"), (b"NC", "truncated"), (b"\x89PNG\r\n\x1a\n", "magic"),
                                      (b"NCDC\x09" + b"\0" * 40, "version")])
def test_foreign_empty_and_short(data, msg):
    with pytest.raises(nc.BitstreamError, match=msg):
        nc.decode(data)


def _with_size(h, w):
    """A file whose header claims h x w, with a valid header checksum (as an attacker would make)."""
    data = _file(shape=(1, 1, 3))
    hdr = container.read_header(data)
    head = bytearray(data[:hdr.size - 4])
    struct.pack_into(">II", head, len(head) - 11, h, w)
    return bytes(head) + struct.pack(">I", container._crc(bytes(head))) + data[hdr.size:]


@pytest.mark.parametrize("h,w", [(0, 5), (5, 0), (70000, 10), (60000, 60000)])
def test_absurd_sizes_refused_before_allocation(h, w):
    with pytest.raises(nc.BitstreamError, match="claims an image"):
        nc.decode(_with_size(h, w))


def test_unknown_codec_and_bad_settings():
    with pytest.raises(nc.BitstreamError, match="unknown codec"):
        nc.decode(_file(name="no-such-codec"))
    with pytest.raises(nc.BitstreamError, match="settings"):
        nc.decode(_file(settings={"quality": 5, "bogus": 1}))


@pytest.mark.parametrize("raw", ['{"quality":' + "[" * 5000 + "]" * 5000 + "}",   # nesting: RecursionError
                                 '{"quality":' + "9" * 5000 + "}",                     # digits: int() refuses
                                 '{"quality":[5]}', '{"quality":{"a":5}}', "[5]"])
def test_crafted_settings_are_bitstream_errors(raw, monkeypatch):
    """Settings JSON that an attacker wrote (with a valid header checksum): never anything but BitstreamError."""
    import json
    import types

    monkeypatch.setattr(container, "json", types.SimpleNamespace(dumps=lambda *a, **k: raw, loads=json.loads))
    data = _file()
    monkeypatch.undo()
    with pytest.raises(nc.BitstreamError, match="settings"):
        nc.decode(data)


def test_chunk_claiming_more_than_remains():
    data = bytearray(_file(chunks=(b"abc",)))
    hdr = container.read_header(bytes(data))
    struct.pack_into(">I", data, hdr.size, 2**31)
    with pytest.raises(nc.BitstreamError, match="truncated"):
        nc.decode(bytes(data))


def test_partial_files_only_for_progressive():
    data = _file()
    hdr = container.read_header(data)
    cut = data[:hdr.size + 4 + 3 + 4]  # exactly after chunk 1
    assert container.read_chunks(cut, hdr, allow_partial=True) == [b"abc"]
    with pytest.raises(nc.BitstreamError, match="truncated"):
        container.read_chunks(cut, hdr, allow_partial=False)
    chunks = container.read_chunks(data, hdr, allow_partial=True)
    short = container.truncate(hdr, chunks, 1)
    assert container.read_header(short).n_chunks == 1
    for steps in (3, 0, "2", True):
        with pytest.raises(nc.BitstreamError):
            container.truncate(hdr, chunks, steps)


def test_swapped_chunks_are_caught():
    a = _file(chunks=(b"abcd", b"efgh"))
    hdr = container.read_header(a)
    body = a[hdr.size:]
    swapped = a[:hdr.size] + body[12:] + body[:12]
    with pytest.raises(nc.BitstreamError, match="checksum"):
        container.read_chunks(swapped, hdr, allow_partial=False)


def test_fingerprint_mismatch_is_loud(monkeypatch):
    img = np.zeros((8, 8, 3), np.uint8)
    data = nc.create_codec("fmm").encode(img)
    hdr = container.read_header(data)
    forged = container.pack(hdr.name, hdr.settings, b"\x01" * 8, (8, 8, 3),
                            container.read_chunks(data, hdr, allow_partial=False))
    with pytest.raises(nc.BitstreamError, match="other weights"):
        nc.decode(forged)
