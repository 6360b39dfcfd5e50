"""neuralcodecs: learned image codecs of the 2012-2019 literature as real codecs, beside classical ones.

    import neuralcodecs as nc
    codec = nc.create_codec("jpeg", quality=75)
    data = codec.encode(img)        # uint8 HxWx3 -> bytes (the whole file)
    out = nc.decode(data)           # the file says which codec made it
"""
from .codec import Codec, decode, encode, extract, info, truncate
from .errors import BitstreamError
from .image import load_image, max_decode_pixels, save_image, set_max_decode_pixels
from .registry import create_codec, list_codecs, register
from . import codecs  # noqa: F401,E402  (last: the codec modules register themselves)

__all__ = ["Codec", "BitstreamError", "create_codec", "list_codecs", "register", "encode", "decode",
           "truncate", "extract", "info", "load_image", "save_image", "max_decode_pixels",
           "set_max_decode_pixels"]
__version__ = "0.1.0"
