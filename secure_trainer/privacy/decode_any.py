"""The default `Decoder`: DICOM Part 10 files (by their magic) to the DICOM path, every other
image to Pillow's. Bytes in, bytes out, in this process (entrypoint/decode/ runs it in a child).

SECURITY: never opens a file, never logs.
"""

from __future__ import annotations

from secure_trainer.privacy.dicom.decode import decode_dicom
from secure_trainer.privacy.dicom.detect import is_dicom
from secure_trainer.privacy.image_decode import DecodedImage, DecodeRequest, decode_image

__all__ = ["decode_any"]


def decode_any(raw: bytes, request: DecodeRequest) -> DecodedImage:
    """Decode `raw` per `request`; raises ImageRejected for this one file."""
    if is_dicom(raw[:132]):
        return decode_dicom(raw, request)
    return decode_image(raw, request)
