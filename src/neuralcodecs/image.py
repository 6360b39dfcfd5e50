"""Images: load and save, validation of the uint8 arrays codecs take, array <-> tensor, padding.

Codecs work on uint8 arrays shaped HxWxC. Grayscale is HxW at the public API; `as_image` turns
every accepted input into HxWxC and says clearly what it refuses.
"""
from __future__ import annotations

import io
import os
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:  # for annotations only: this module itself works on arrays, and imports torch where it makes tensors
    import torch

MAX_SIDE = 65535
MAX_PIXELS = 1 << 27  # ~134 Mpixel: the largest image this library handles at all
# The decoder pixel limit (like Pillow's MAX_IMAGE_PIXELS): a file claiming a larger image is refused before any
# work, since decoding time grows with the claimed size, not the file's. Settable with the environment variable
# NEURALCODECS_MAX_PIXELS or set_max_decode_pixels(); encoding is not limited by it.
DEFAULT_MAX_DECODE_PIXELS = 1 << 26  # ~67 Mpixel (an 8192 x 8192 image)
_max_decode_pixels: int | None = None


def max_decode_pixels() -> int:
    """The decoder pixel limit now in force."""
    if _max_decode_pixels is not None:
        return _max_decode_pixels
    value = os.environ.get("NEURALCODECS_MAX_PIXELS")
    if not value:
        return DEFAULT_MAX_DECODE_PIXELS
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"NEURALCODECS_MAX_PIXELS must be a whole number of pixels >= 1, not {value!r}")
    return min(n, MAX_PIXELS)


def set_max_decode_pixels(n: int | None) -> None:
    """Set the decoder pixel limit for this process (None: back to the environment variable or the default)."""
    global _max_decode_pixels
    if n is not None and not 1 <= n <= MAX_PIXELS:
        raise ValueError(f"the decoder pixel limit must be in [1, {MAX_PIXELS}]")
    _max_decode_pixels = n


def as_image(image: np.ndarray) -> np.ndarray:
    """Validate an image and return it as a C-contiguous uint8 HxWxC array (C in 1, 3, 4)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (8-bit), got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be HxW (gray), HxWx3 (RGB) or HxWx4 (RGBA), got shape {image.shape}")
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    check_size(h, w)
    return np.ascontiguousarray(image)


def check_size(h: int, w: int, what: str = "image") -> None:
    """ValueError for an image larger than this library handles at all (MAX_SIDE, MAX_PIXELS)."""
    if h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_PIXELS:
        raise ValueError(f"{what} of {w}x{h} is larger than this library handles")


def load_image(path: str | os.PathLike, alpha: str = "keep") -> np.ndarray:
    """Read an image file into uint8 HxW (gray), HxWx3 or HxWx4, turned upright by its EXIF orientation;
    palette and 16-bit images are converted. `alpha` says what happens to an alpha channel: "keep" it,
    "flatten" the image onto white (what a viewer shows), or "drop" it."""
    if alpha not in ("keep", "flatten", "drop"):
        raise ValueError(f"alpha must be keep, flatten or drop, got {alpha!r}")
    gray = False
    try:
        with Image.open(path) as im:
            w, h = im.size  # from the header: the size is checked before any pixel is decoded
            check_size(h, w, f"{path}: an image")
            im.load()
            im = ImageOps.exif_transpose(im)  # cameras store pixels sideways and say so in EXIF
            if im.mode in ("L", "RGB", "RGBA"):
                pass
            elif im.mode in ("1", "I;16", "I;16B", "I;16L", "I", "F"):
                im = im.convert("L") if im.mode == "1" else _to_8bit_gray(im)
            elif im.mode in ("LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                gray = im.mode == "LA"  # stays gray once its alpha is flattened or dropped
                im = im.convert("RGBA")
            else:
                im = im.convert("RGB")
            x = np.asarray(im).copy()
    # a truncated or malformed file fails inside Pillow's decoders with OSError (without an errno: one with an
    # errno is the path's problem, such as a missing file, and stays itself), SyntaxError or struct.error
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, struct.error) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        raise ValueError(f"{path}: not a readable image ({e})") from None
    if x.ndim == 3 and x.shape[2] == 4 and alpha != "keep":
        rgb = x[:, :, :1 if gray else 3].astype(np.float64)
        if alpha == "flatten":
            a = x[:, :, 3:].astype(np.float64) / 255
            rgb = rgb * a + 255 * (1 - a)
        x = np.round(rgb).astype(np.uint8)
        x = x[:, :, 0] if gray else x
    return x


# Suffixes of the image files a folder is read for (batch encoding, evaluation, training)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".bmp", ".tif", ".tiff", ".webp"}


def image_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The image files of a folder (or its whole tree), sorted by path."""
    paths = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

# Suffixes an image may be saved under: lossless formats only, so a decoded image is written as decoded.
LOSSLESS = {".png": "PNG", ".ppm": "PPM", ".pgm": "PPM", ".pnm": "PPM", ".tif": "TIFF", ".tiff": "TIFF",
            ".bmp": "BMP"}


def lossless_format(path: str | os.PathLike) -> str:
    """The lossless format a path's suffix names (Pillow's name); ValueError for any other suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in LOSSLESS:
        raise ValueError(f"{path}: images are written losslessly, as {', '.join(sorted(LOSSLESS))}; "
                         f"{suffix or 'no suffix'} is not one (a lossy format would change the decoded pixels; "
                         f"`neuralcodecs extract` writes a codec's own standard file)")
    return LOSSLESS[suffix]


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float gray image as 8 bits: 16-bit modes scale from 0..65535 whatever the pixels
    (a dark 16-bit image stays dark); 32-bit integer and float files do not say their range, so a float image
    within [0, 1] is taken as 0..1, and otherwise values above 255 mean 0..65535, else 0..255."""
    a = np.asarray(im).astype(np.float64)
    if im.mode.startswith("I;16"):
        peak = 65535.0
    elif im.mode == "F" and a.max() <= 1.0:
        peak = 1.0
    else:
        peak = 65535.0 if a.max() > 255 else 255.0
    return Image.fromarray(np.clip(np.round(a * 255.0 / peak), 0, 255).astype(np.uint8))


def save_image(path: str | os.PathLike, image: np.ndarray, force: bool = True) -> None:
    """Write an image losslessly (PNG unless the suffix says otherwise), atomically; force=False refuses to
    overwrite."""
    path = Path(path)
    lossless_format(path)  # the error names the path
    write_atomic(path, encode_image(image, path.suffix), force=force)


def encode_image(image: np.ndarray, suffix: str = ".png") -> bytes:
    """An image as the bytes of a lossless file of that suffix."""
    image = as_image(image)
    fmt = lossless_format(f"image{suffix}")
    if fmt in ("PPM", "BMP") and image.shape[2] == 4:
        raise ValueError(f"{fmt} has no alpha channel; write .png or .tiff")
    return _encode_pil(Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image), fmt)


def _encode_pil(pil: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    pil.save(out, format=fmt)
    return out.getvalue()


# the process's umask, read once at import: reading it means setting it, which is not safe while other threads
# create files
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: str | os.PathLike, data: bytes, force: bool = True) -> None:
    """Write bytes to `path` through a temporary file and a rename, so a reader never sees half a file.
    With force=False an existing file is refused (FileExistsError)."""
    path = Path(path)
    if not force and path.exists():
        raise FileExistsError(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 is for the temporary; the file gets normal permissions
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if not force:
            # os.link fails if the target appeared meanwhile: no overwrite, even in a race
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def pad(image: np.ndarray, multiple: int, min_side: int = 1) -> np.ndarray:
    """Pad HxWxC at the bottom and right by edge replication to a multiple of `multiple`
    (and at least `min_side`); edge replication adds no new edges for a codec to spend bits on."""
    h, w = image.shape[:2]
    ph, pw = padded_shape(h, w, multiple, min_side)
    if (ph, pw) == (h, w):
        return image
    return np.pad(image, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")


def padded_shape(h: int, w: int, multiple: int, min_side: int = 1) -> tuple[int, int]:
    """The (height, width) `pad` gives an h x w image: multiples of `multiple`, at least `min_side`."""
    m = -(-min_side // multiple) * multiple
    return max(-(-h // multiple) * multiple, m), max(-(-w // multiple) * multiple, m)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWxC (or HxW) -> float32 tensor 1xCxHxW in [0, 1]."""
    import torch

    image = as_image(image)
    return torch.tensor(image).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)  # a copy: inputs may be read-only


def from_tensor(x: torch.Tensor) -> np.ndarray:
    """float tensor 1xCxHxW in [0, 1] -> uint8 HxWxC, rounded and clipped like any 8-bit decoder."""
    x = x.detach().float().clamp(0, 1).mul(255.0).round().to("cpu")
    return np.ascontiguousarray(x[0].permute(1, 2, 0).numpy(), dtype=np.uint8)  # C libraries need contiguous
