"""The one codec interface, and the top-level encode/decode/truncate/info built on it.

A codec subclasses `Codec`, declares a frozen dataclass `Config` (always with `quality`), the standard
rate points `qualities` (lowest to highest rate) and implements `encode_chunks` / `decode_chunks` on
uint8 HxWxC arrays. Everything else is shared here: input validation, channel handling, padding to the
codec's alignment, the file container, fingerprints, and turning any decoder failure into BitstreamError.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
from typing import Any, Callable, ClassVar

import numpy as np

from . import container
from .errors import BitstreamError
from .image import as_image, max_decode_pixels, pad, padded_shape
from .metrics import bpp
from .registry import create_codec, get_entry


@dataclasses.dataclass(frozen=True)
class Command:
    """A command-line command a codec declares (e.g. jiang2017-enhance's `enhance`); the CLI finds it in the
    registry. add_arguments(parser) declares its arguments; run(args) does the work (errors as exceptions)."""
    name: str
    help: str
    add_arguments: Callable[[Any], None]
    run: Callable[[Any], None]


# Field metadata of a Config setting that only the encoder reads (how hard it works, not what the file
# means): files leave it out, so the bytes of a file depend on what it codes, not on the effort spent, and
# a decoder builds the codec with the setting's default.
ENCODER_ONLY = {"encoder_only": True}
# Field metadata key of a Config setting added after files were written without it: the value such files were
# made with, which a decoder uses where a file does not name the setting (the setting's default is for new files).
FILE_DEFAULT = "file_default"


@dataclasses.dataclass(frozen=True)
class CodecConfig:
    quality: Any = None


class _ConfigDefault:
    """`cls.default_quality` reads the default of cls.Config.quality: the default is stated once, in Config."""

    def __get__(self, obj: Any, cls: type) -> Any:
        return cls.Config.__dataclass_fields__["quality"].default


class Codec:
    """Base of every codec, classical or learned.

    Class attributes a codec sets:
      Config          frozen dataclass of settings (validated in __post_init__; stored in every file)
      qualities       the standard RD sweep, lowest rate first
      default_quality quality used when none is given: Config's default for `quality` (read-only here)
      channels        channel counts coded natively; gray (1) is otherwise coded as RGB and averaged back
      pad_to, min_side  the codec sees images padded (edge replication) to a multiple of pad_to, at least
                      min_side on each side; the file keeps the true size and decoding crops back
      progressive     one chunk per step; a file cut at a chunk boundary decodes (see `truncate`)
      native_ext      file suffix of the standard format `encode_native` writes, if the codec has one
      commands        command-line commands of this codec (Command), added to `neuralcodecs` by the CLI
      learned         whether a trained network takes part (reports and plots group codecs by it)
      quality_meaning what `quality` means for this codec, in a few words (`list`, `encode --help`)
    """

    Config: ClassVar[type] = CodecConfig
    qualities: ClassVar[tuple] = ()
    default_quality: ClassVar[Any] = _ConfigDefault()
    channels: ClassVar[tuple[int, ...]] = (3,)
    pad_to: ClassVar[int] = 1
    min_side: ClassVar[int] = 1
    progressive: ClassVar[bool] = False
    native_ext: ClassVar[str | None] = None
    commands: ClassVar[tuple[Command, ...]] = ()
    learned: ClassVar[bool] = False
    quality_meaning: ClassVar[str] = ""

    def __init__(self, config: Any, name: str | None = None):
        super().__init__()  # lets learned codecs also be torch.nn.Modules
        self.config = config
        self.name = name or type(self).__name__.lower()

    @classmethod
    def trained(cls, name: str) -> bool:
        """Whether the codec can code now: true unless it needs trained weights that are not installed."""
        return True

    @classmethod
    def implied_settings(cls, name: str) -> dict:
        """Settings files of `name` leave out because something else they name fixes them (a learned codec's
        weights: LearnedCodec); a decoder takes them from here."""
        return {}

    @classmethod
    def from_config(cls, config: Any, name: str) -> "Codec":
        """A codec ready to code (learned codecs load their shipped weights here)."""
        return cls(config, name=name)

    def __repr__(self) -> str:
        return f"{self.name}({self.config})"

    # -- what a codec implements ---------------------------------------------------------------
    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        """uint8 HxWxC (C in self.channels, already padded) -> the file's chunks."""
        raise NotImplementedError

    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        """The chunks (a prefix for progressive codecs) -> uint8 array of `shape` (padded HxWxC)."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> bytes:
        """Identifies the weights a file needs (empty for codecs without weights)."""
        return b""

    def encode_native(self, image: np.ndarray) -> bytes:
        """The standard file (JPEG, WebP, ...) any viewer opens that a codec's one chunk is (`native_ext`): that
        chunk, exactly as `encode` would put it in a neuralcodecs file. It holds what the codec codes: the image
        padded by the codec's rules (a jpeg2000 side to at least 2 pixels), or for jiang2017 the half-size
        compact image its host codec codes."""
        if self.native_ext is None or self.n_chunks != 1:
            raise NotImplementedError(f"{self.name} has no native file format")
        return self.encode_chunks(self._prepare(as_image(image)))[0]

    def warm_up(self, image: np.ndarray) -> None:
        """An untimed round trip on a small crop of `image`, so that one-time setup (imports, libraries,
        the decoder cache) stays out of measured timings."""
        decode(self.encode(np.ascontiguousarray(image[:64, :64])))

    # -- shared ----------------------------------------------------------------------------------
    @property
    def settings(self) -> dict:
        """The settings a file stores: the Config's, but for those only the encoder reads (ENCODER_ONLY). A
        whole-number float is stored as the integer, so one setting writes one byte string (jpeg2000's quality
        36 and 36.0 are the same file); every Config reads an integer where it takes a float."""
        def stored(v: Any) -> Any:
            v = v.item() if isinstance(v, np.generic) else v  # numpy's scalars as Python's
            return int(v) if isinstance(v, float) and v.is_integer() else v
        return {f.name: stored(getattr(self.config, f.name)) for f in dataclasses.fields(self.config)
                if not f.metadata.get("encoder_only")}

    def _coded_channels(self, c: int) -> int:
        if c in self.channels:
            return c
        if c == 1 and 3 in self.channels:
            return 3
        kind = {1: "grayscale", 4: "RGBA (alpha)"}.get(c, f"{c}-channel")
        raise ValueError(f"{self.name} does not code {kind} images; it takes {self.channels} channels"
                         + (" (use png, or --alpha flatten / drop)" if c == 4 else ""))

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        """A valid image as encode_chunks takes it: gray repeated where the codec codes RGB, padded."""
        cc = self._coded_channels(x.shape[2])
        if cc != x.shape[2]:
            x = np.repeat(x, cc, axis=2)
        return pad(x, self.pad_to, self.min_side)

    def encode(self, image: np.ndarray) -> bytes:
        """uint8 HxWx3 (or HxW gray, HxWx4 where supported) -> the whole file as bytes."""
        x = as_image(image)
        chunks = self.encode_chunks(self._prepare(x))
        return container.pack(self.name, self.settings, self.fingerprint, x.shape, chunks)

    @property
    def n_chunks(self) -> int | None:
        """The number of chunks its files have (None: progressive, 1 up to its quality's steps)."""
        return None if self.progressive else 1

    @property
    def legacy_chunks(self) -> tuple[int, ...]:
        """Other numbers of chunks that files of an earlier layout of this codec have, and it still decodes."""
        return ()

    def decode_file(self, header: container.Header, chunks: list[bytes]) -> np.ndarray:
        try:
            cc = self._coded_channels(header.channels)
        except ValueError as e:
            raise BitstreamError(f"corrupted file: {e}") from None
        expected = self.n_chunks
        if ((len(chunks) != expected and len(chunks) not in self.legacy_chunks) if expected is not None
                else not 1 <= len(chunks) <= self.config.quality):
            raise BitstreamError(f"corrupted file: {len(chunks)} chunks, {self.name} at these settings writes "
                                 f"{expected if expected is not None else f'1 to {self.config.quality}'}")
        ph, pw = padded_shape(header.height, header.width, self.pad_to, self.min_side)
        if ph * pw > max_decode_pixels():  # padding can push a claim at the limit over it
            raise BitstreamError(f"image of {pw}x{ph} coded pixels is over the decoder limit")
        try:
            x = self.decode_chunks(chunks, (ph, pw, cc))
        except BitstreamError:
            raise
        except Exception as e:  # a library's own error on damaged data is a bad bitstream to our callers
            raise BitstreamError(f"corrupted file: {self.name} could not decode its data ({type(e).__name__}: {e})") from e
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.shape != (ph, pw, cc):
            got = getattr(x, "shape", None)
            raise BitstreamError(f"corrupted file: {self.name} decoded shape {got}, header says {(ph, pw, cc)}")
        x = x[:header.height, :header.width]
        if cc != header.channels:  # gray coded as RGB: average back
            x = np.round(x.mean(axis=2, keepdims=True)).astype(np.uint8)
        if header.channels == 1:
            x = x[:, :, 0]
        return np.ascontiguousarray(x)


# Progress bars of slow codecs (toderici's iterations, coconet's fit): off for library callers, on for the
# command line (cli.main), and there only when stderr is a terminal (tqdm's disable=None).
_progress = False


def show_progress(on: bool = True) -> None:
    global _progress
    _progress = on


def progress(iterable: Any = None, total: int | None = None, desc: str | None = None) -> Any:
    """A progress bar over a slow codec's steps (shown only where show_progress(True) was called)."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=None if _progress else True)


def check_number(setting: str, value: Any, lo: float, hi: float, integer: bool = True, meaning: str = "",
                 above_lo: bool = False) -> None:
    """A numeric setting's check ("webp method", "jpeg quality"): a number (an integer if `integer`; never a bool)
    in [lo, hi], or in (lo, hi] with `above_lo` (a step, a time budget: 0 is no value)."""
    kind = numbers.Integral if integer else numbers.Real
    if (isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi
            or (above_lo and value == lo)):
        what = meaning or ("an integer" if integer else "a number")
        raise ValueError(f"{setting} must be {what} in {'(' if above_lo else '['}{lo}, {hi}], got {value!r}")


def check_quality(name: str, quality: Any, lo: float, hi: float, integer: bool = True, meaning: str = "") -> None:
    """Every codec's check of its quality (check_number)."""
    check_number(f"{name} quality", quality, lo, hi, integer, meaning)


def check_index_quality(name: str, quality: Any, n: int, meaning: str = "rate point") -> None:
    """For codecs whose qualities are 1..n (rate points, presets, iterations): refuse anything else."""
    check_quality(name, quality, 1, n, meaning=f"the {meaning}")


@functools.lru_cache(maxsize=16)
def _decoder(name: str, settings_json: str) -> Codec:
    try:
        entry = get_entry(name)
    except KeyError:
        raise BitstreamError(f"file made by unknown codec {name!r}") from None
    try:
        # the settings are checked (Config's own checks, the name's fixed settings, and for learned codecs
        # the shipped weights' architecture) before anything is built from them
        # settings newer than the file: the value it was made with (the name's own settings stay the name's)
        older = {f.name: f.metadata[FILE_DEFAULT] for f in dataclasses.fields(entry.cls.Config)
                 if FILE_DEFAULT in f.metadata and f.name not in entry.defaults}
        # and those the codec's weights fix, which files leave out (files from before 2026-12-07 hold them): what
        # the weights fix is never a value older files had
        settings = {**older, **entry.cls.implied_settings(name), **json.loads(settings_json)}
        return entry.cls.from_config(entry.config(settings), name=name)
    except (TypeError, ValueError) as e:
        raise BitstreamError(f"file has settings that {name} cannot decode ({e})") from None


def decoder_for(header: container.Header) -> Codec:
    codec = _decoder(header.name, json.dumps(header.settings, sort_keys=True))
    if header.fingerprint != codec.fingerprint:
        raise BitstreamError(f"file was made with other weights for {header.name} "
                             f"(file {header.fingerprint.hex()[:16]}, installed {codec.fingerprint.hex()[:16]})")
    return codec


def open_file(data: bytes, allow_partial: bool | None = None) -> tuple[container.Header, Codec, list[bytes]]:
    """The one way into a file: header, the codec that decodes it, and its checked chunks. A file cut at a
    chunk boundary is accepted for progressive codecs (allow_partial None) or as asked."""
    header = container.read_header(data)
    codec = decoder_for(header)
    partial = codec.progressive if allow_partial is None else allow_partial
    return header, codec, container.read_chunks(data, header, allow_partial=partial)


def decode(data: bytes) -> np.ndarray:
    """Decode a neuralcodecs file; the file says which codec and settings made it."""
    header, codec, chunks = open_file(data)
    return codec.decode_file(header, chunks)


def encode(image: np.ndarray, codec: str = "jpeg", quality: Any = None, **settings: Any) -> bytes:
    """Shortcut: create_codec(codec, quality, **settings).encode(image)."""
    return create_codec(codec, quality, **settings).encode(image)


def truncate(data: bytes, steps: int) -> bytes:
    """Keep the first `steps` chunks of a progressive file as a valid (smaller, lower-quality) file."""
    check_number("steps", steps, 1, math.inf, meaning="a number of chunks")
    header, codec, chunks = open_file(data, allow_partial=True)
    if not codec.progressive:
        raise BitstreamError(f"{header.name} files are not progressive; they cannot be truncated")
    return container.truncate(header, chunks, steps)


def extract(data: bytes) -> tuple[bytes, str]:
    """The standard file inside a file whose one chunk is one (classical codecs, jiang2017's compact
    image): (its bytes, its suffix such as ".jpg"). BitstreamError for other files."""
    header, codec, chunks = open_file(data, allow_partial=False)
    if codec.native_ext is None or len(chunks) != 1:
        raise BitstreamError(f"{header.name} files hold no standard image file to extract")
    return chunks[0], codec.native_ext


def info(data: bytes) -> dict:
    """What a file holds: codec, settings, fingerprint, image size, chunk sizes, bytes and bpp."""
    header, codec, chunks = open_file(data)
    return {
        "codec": header.name, "settings": header.settings, "fingerprint": header.fingerprint.hex(),
        "height": header.height, "width": header.width, "channels": header.channels,
        "chunks": [len(c) for c in chunks], "declared_chunks": header.n_chunks,
        "header_bytes": header.size, "bytes": len(data),
        "bpp": bpp(len(data), header.height, header.width), "progressive": codec.progressive,
        **({"standard_file": f"chunk 0 is a {codec.native_ext} file: `neuralcodecs extract FILE OUT{codec.native_ext}`"}
           if codec.native_ext and len(chunks) == 1 else {}),
    }


@functools.lru_cache(maxsize=64)
def _host(name: str, quality: Any) -> Codec:
    return create_codec(name, quality=quality)


class HostedCodec:
    """Mixin for codecs built around a standard codec, the host (jiang2017's JPEG, prakash2017's JPEG): the
    host's padding rules and the host instances live here, once.

    A subclass says which host it uses with `host_name` (a property may read it from the settings) and codes
    through host_encode / host_decode, which pad to the host's alignment and crop back, so the host sees
    exactly what it would see from the user.
    """

    host_name: str = "jpeg"

    def host(self, quality: Any = None) -> Codec:
        """The host codec at `quality` (default: this codec's own quality), made once per quality."""
        return _host(self.host_name, self.config.quality if quality is None else quality)

    @property
    def native_ext(self) -> str | None:
        return self.host().native_ext

    def host_encode(self, x: np.ndarray, quality: Any = None) -> list[bytes]:
        """uint8 HxWxC -> the host's chunks (padded by the host's rules)."""
        host = self.host(quality)
        return host.encode_chunks(pad(x, host.pad_to, host.min_side))

    def host_decode(self, chunks: list[bytes], h: int, w: int, c: int = 3, quality: Any = None) -> np.ndarray:
        """The host's chunks of an h x w image -> uint8 h x w x c (the host's padding cropped)."""
        host = self.host(quality)
        return host.decode_chunks(chunks, (*padded_shape(h, w, host.pad_to, host.min_side), c))[:h, :w]
