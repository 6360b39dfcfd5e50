"""Classical codecs, in-process, behind the same interface as the learned ones.

Each wraps a standard library (no external programs) and stores that library's own bitstream as the one
chunk of a neuralcodecs file; `encode_native` gives the same bitstream as a standard file.

  jpeg      libjpeg-turbo (imagecodecs), 4:2:0 chroma, no Huffman optimisation: the defaults of PIL and
            most software, so our numbers are comparable with published "JPEG" curves
  jpeg444   the same without chroma subsampling
  jpeg2000  OpenJPEG (imagecodecs); quality is the target PSNR in dB that OpenJPEG rate-allocates for
  webp      libwebp, lossy
  avif      libavif/libaom (imagecodecs), fixed speed so a Kodak sweep takes minutes, not hours
  heif      HEVC through x265 in pillow-heif, 4:4:4: our stand-in for BPG (published BPG curves are 4:4:4)
  jpegxl    libjxl (imagecodecs); quality on libjxl's scale, 0..99
  png       lossless
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..codec import ENCODER_ONLY, Codec, check_number, check_quality
from ..registry import register


def _ic():
    """imagecodecs, imported when a classical codec first runs: machines that only train learned codecs
    (a GPU machine, say) need not have it."""
    import imagecodecs

    return imagecodecs


def _as_hwc(x: np.ndarray) -> np.ndarray:
    return x[:, :, None] if x.ndim == 2 else x


class _SingleChunk(Codec):
    """A library codec whose whole bitstream is the single chunk; subclasses give _encode (an H x W gray or
    H x W x C image) and _decode.

    _decode(data, out) decodes into `out`, the array of the size the container claims: the libraries read
    the embedded file's own size first and refuse a mismatch before decoding (or allocating) anything, so a
    small file cannot claim a huge image inside."""

    def _encode(self, x: np.ndarray) -> bytes:
        raise NotImplementedError

    def _decode(self, data: bytes, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        return [self._encode(x[:, :, 0] if x.shape[2] == 1 else x)]  # the libraries take gray as H x W

    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        h, w, c = shape
        return _as_hwc(self._decode(chunks[0], np.empty((h, w) if c == 1 else (h, w, c), np.uint8)))


@register("jpeg444", subsampling="444")
@register("jpeg", subsampling="420")
class JPEG(_SingleChunk):
    """JPEG (ITU-T T.81 / ISO 10918-1) through libjpeg-turbo: x -> YCbCr (4:2:0, or 4:4:4 as jpeg444) -> 8x8 DCT
    -> quantization scaled by quality -> Huffman coding -> the JPEG file as the one chunk."""
    quality_meaning = "libjpeg quality 1-100 (higher: larger, better)"
    @dataclass(frozen=True)
    class Config:
        quality: int = 75
        subsampling: str = "420"

        def __post_init__(self):
            check_quality("jpeg", self.quality, 1, 100)
            if self.subsampling not in ("420", "444"):
                raise ValueError(f"jpeg subsampling must be '420' or '444', got {self.subsampling!r}")

    qualities: ClassVar[tuple] = (5, 10, 15, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95)
    channels = (1, 3)
    native_ext = ".jpg"

    def _encode(self, x):
        return bytes(_ic().jpeg8_encode(x, level=self.config.quality, subsampling=self.config.subsampling,
                                        optimize=False))

    def _decode(self, data, out):
        return _ic().jpeg8_decode(data, out=out)


@register("jpeg2000")
class JPEG2000(_SingleChunk):
    """JPEG 2000 (ISO 15444-1) through OpenJPEG: x -> colour transform -> 9/7 wavelet -> EBCOT bit-plane coding,
    layers rate-allocated to the target PSNR -> the codestream as the one chunk."""
    quality_meaning = "target PSNR in dB (OpenJPEG's fixed-quality mode)"
    @dataclass(frozen=True)
    class Config:
        quality: float = 36.0  # target PSNR in dB (OpenJPEG's fixed-quality mode)

        def __post_init__(self):
            check_quality("jpeg2000", self.quality, 10, 80, integer=False)

    qualities: ClassVar[tuple] = (26, 28, 30, 32, 34, 36, 38, 40, 42, 44)
    channels = (1, 3)
    native_ext = ".jp2"
    min_side = 2  # OpenJPEG refuses a 1-pixel side with its default number of resolutions

    def _encode(self, x):
        return bytes(_ic().jpeg2k_encode(x, level=float(self.config.quality),
                                               codecformat="jp2", numthreads=1))

    def _decode(self, data, out):
        return _ic().jpeg2k_decode(data, out=out)


@register("webp")
class WebP(_SingleChunk):
    """WebP (lossy: VP8 intra coding) through libwebp: x -> YUV 4:2:0 -> 4x4 predicted transform blocks -> boolean
    arithmetic coding -> the WebP file as the one chunk."""
    quality_meaning = "libwebp quality 0-100"
    @dataclass(frozen=True)
    class Config:
        quality: int = 75
        method: int = field(default=6, metadata=ENCODER_ONLY)  # libwebp's search effort 0-6: 6, the slowest, best

        def __post_init__(self):
            check_quality("webp", self.quality, 0, 100)
            check_number("webp method", self.method, 0, 6)

    qualities: ClassVar[tuple] = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
    native_ext = ".webp"

    def _encode(self, x):
        return bytes(_ic().webp_encode(x, level=int(self.config.quality), lossless=False,
                                             method=self.config.method))

    def _decode(self, data, out):
        return _ic().webp_decode(data, out=out)


@register("avif")
class AVIF(_SingleChunk):
    """AVIF (AV1 intra frame in HEIF) through libavif/libaom: x -> YUV -> AV1 intra prediction, transforms and
    entropy coding -> the AVIF file as the one chunk."""
    quality_meaning = "libavif quality 0-100"
    @dataclass(frozen=True)
    class Config:
        quality: int = 60
        # libaom's speed 0-10: its default is far slower (README) for a Kodak sweep
        speed: int = field(default=6, metadata=ENCODER_ONLY)

        def __post_init__(self):
            check_quality("avif", self.quality, 0, 100)
            check_number("avif speed", self.speed, 0, 10)

    qualities: ClassVar[tuple] = (5, 15, 25, 35, 45, 55, 65, 75, 85, 92)
    native_ext = ".avif"

    def _encode(self, x):
        return bytes(_ic().avif_encode(x, level=int(self.config.quality), speed=self.config.speed,
                                             numthreads=1))

    def _decode(self, data, out):
        return _ic().avif_decode(data, out=out)


@register("heif")
class HEIF(_SingleChunk):
    """HEIF with HEVC (x265) through pillow-heif, 4:4:4: our stand-in for BPG (Bellard's HEVC-intra format) ->
    the HEIF file as the one chunk."""
    quality_meaning = "libheif/x265 quality 0-100"
    @dataclass(frozen=True)
    class Config:
        quality: int = 50
        chroma: str = field(default="444", metadata=ENCODER_ONLY)  # the HEIF file says which it holds

        def __post_init__(self):
            check_quality("heif", self.quality, 0, 100)
            if self.chroma not in ("444", "420"):
                raise ValueError(f"heif chroma must be '444' or '420', got {self.chroma!r}")

    # denser where photos land between 0.05 and 2 bpp on Kodak (x265's rate climbs fast above q 55)
    qualities: ClassVar[tuple] = (5, 12, 19, 26, 33, 40, 47, 54, 61)
    native_ext = ".heic"

    def _encode(self, x):
        import pillow_heif

        h, w = x.shape[:2]
        heif = pillow_heif.from_bytes(mode="RGB", size=(w, h), data=x.tobytes())
        buf = io.BytesIO()
        heif.save(buf, quality=int(self.config.quality), chroma=int(self.config.chroma))
        return buf.getvalue()

    def _decode(self, data, out):
        import pillow_heif

        im = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)[0]  # reads the header only
        w, h = im.size
        if (h, w, 3) != out.shape or im.mode != "RGB":
            raise ValueError(f"the HEIF inside is {w}x{h} {im.mode}, the file claims {out.shape}")
        rows = np.frombuffer(im.data, np.uint8).reshape(h, im.stride)
        return np.ascontiguousarray(rows[:, : w * 3].reshape(h, w, 3))


@register("jpegxl")
class JPEGXL(_SingleChunk):
    """JPEG XL (ISO 18181) through libjxl: x -> XYB -> variable-size DCT (VarDCT) -> ANS coding -> the JPEG XL
    file as the one chunk."""
    quality_meaning = "libjxl quality 0-99 (through imagecodecs even 100 is lossy: png is the lossless codec here)"
    @dataclass(frozen=True)
    class Config:
        quality: int = 75
        effort: int = field(default=7, metadata=ENCODER_ONLY)  # libjxl's effort 1-10

        def __post_init__(self):
            check_quality("jpegxl", self.quality, 0, 99)
            check_number("jpegxl effort", self.effort, 1, 10)

    qualities: ClassVar[tuple] = (5, 15, 25, 35, 45, 55, 65, 75, 85, 92)
    channels = (1, 3)
    native_ext = ".jxl"

    def _encode(self, x):
        return bytes(_ic().jpegxl_encode(x, level=int(self.config.quality),
                                               effort=self.config.effort, numthreads=1))

    def _decode(self, data, out):
        return _ic().jpegxl_decode(data, out=out)


@register("png")
class PNG(_SingleChunk):
    """PNG (ISO/IEC 15948), lossless: x -> per-row prediction filters -> DEFLATE (zlib) -> the PNG file as the
    one chunk; quality is zlib's compression level (every level gives the same image)."""
    quality_meaning = "zlib level 0-9 (lossless at every level: only the size changes)"

    @dataclass(frozen=True)
    class Config:
        quality: int = 9

        def __post_init__(self):
            check_quality("png", self.quality, 0, 9)

    qualities: ClassVar[tuple] = (9,)
    channels = (1, 3, 4)
    native_ext = ".png"

    def _encode(self, x):
        return bytes(_ic().png_encode(x, level=int(self.config.quality)))

    def _decode(self, data, out):
        return _ic().png_decode(data, out=out)
