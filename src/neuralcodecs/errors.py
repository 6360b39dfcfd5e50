"""Exceptions of the public API."""


class BitstreamError(ValueError):
    """The bytes are not a file this library can decode: empty, foreign, truncated, corrupted,
    made with other weights, or claiming an image size that is absurd."""
