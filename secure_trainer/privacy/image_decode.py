"""Decode one untrusted encoded image and re-encode it from its pixels alone: bytes in, bytes out.

This is the part of the import sanitizer that parses attacker-controlled image data (container
headers, Pillow's decoders, lcms colour profiles, OpenCV for face blur). It takes bytes and
returns bytes plus counts, so it can run in a separate, unprivileged process (`Decoder`): it
opens no file, knows no path and needs no key.
SECURITY: never reads or writes a file, never logs, never puts image content in a message.
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from secure_trainer.privacy.imagemeta import inspect_bytes

if TYPE_CHECKING:
    from secure_trainer.privacy.faces import FaceBlurrer

__all__ = [
    "DecodeRequest",
    "DecodedImage",
    "Decoder",
    "DicomInfo",
    "DicomRequest",
    "ImageRejected",
    "RejectReason",
    "decode_image",
]

_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP"}


class RejectReason(str, Enum):
    """Why one source file was not imported; reports count files per reason."""

    UNSUPPORTED = "unsupported"
    CORRUPT = "corrupt"
    TRUNCATED = "truncated"
    DECOMPRESSION_BOMB = "decompression_bomb"
    TOO_LARGE = "too_large"
    SYMLINK = "symlink"
    OUTSIDE_SUBSET = "outside_subset"
    CAPTION_PII = "caption_pii"
    CAPTION_ENCODING = "caption_encoding"
    COLOR_PROFILE = "color_profile"
    METADATA_SURVIVED = "metadata_survived"
    ERASED = "erased"
    DECODER_CRASHED = "decoder_crashed"
    """The isolated decoder process died on this file (a crash, or out of memory)."""
    DECODER_TIMEOUT = "decoder_timeout"
    """The isolated decoder took longer than its per-image limit and was killed."""
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
    """A DICOM file compressed in a syntax no installed pydicom pixel handler decodes."""
    BURNED_IN_ANNOTATION = "burned_in_annotation"
    """A DICOM file flagged BurnedInAnnotation = YES (text in the pixels), without opt-in."""


class ImageRejected(Exception):
    """This one image is refused, for `reason` (never a message with content)."""

    def __init__(self, reason: RejectReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


_CAPTION_ATTRIBUTES = ("Modality", "BodyPartExamined")


@dataclass(frozen=True)
class DicomRequest:
    """How DICOM files are rendered and de-identified (plain values: crosses a process)."""

    uid_key: str = ""
    """Hex of a per-import random key for UIDs and date shifts (never the pseudonym key)."""
    dates: Literal["remove", "shift"] = "remove"
    window: tuple[float, float] | None = None
    """(center, width) overriding the file's window."""
    bits: Literal[8, 16] = 8
    allow_burned_in: bool = False
    caption_attributes: tuple[str, ...] = _CAPTION_ATTRIBUTES
    """Non-identifying attributes whose values (after de-identification) form the caption."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {"uid_key": self.uid_key, "dates": self.dates,
                "window": list(self.window) if self.window else None, "bits": self.bits,
                "allow_burned_in": self.allow_burned_in,
                "caption_attributes": list(self.caption_attributes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DicomRequest:
        """Inverse of `to_json`. Raises ValueError/TypeError/KeyError on a malformed value."""
        if data["dates"] not in ("remove", "shift") or data["bits"] not in (8, 16):
            raise ValueError("bad DICOM request")
        win = data["window"]
        return cls(uid_key=str(data["uid_key"]), dates=data["dates"],
                   window=(float(win[0]), float(win[1])) if win is not None else None,
                   bits=data["bits"], allow_burned_in=bool(data["allow_burned_in"]),
                   caption_attributes=tuple(str(a) for a in data["caption_attributes"]))


@dataclass(frozen=True)
class DecodeRequest:
    """What the decoder does to every image (plain values: it crosses a process boundary)."""

    output_format: Literal["png", "webp"] = "png"
    resolution: tuple[int, int] | None = None
    """(width, height): resize to cover and centre-crop."""
    blur_faces: bool = False
    find_faces: bool = False
    """Count faces without blurring them (the policy fact `dataset.faces_found_not_blurred`)."""
    max_pixels: int = 64_000_000
    """Decompression-bomb guard, checked from the header before any pixel is decoded."""
    dicom: DicomRequest = DicomRequest()

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form for the decoder process."""
        return {"output_format": self.output_format,
                "resolution": list(self.resolution) if self.resolution else None,
                "blur_faces": self.blur_faces, "find_faces": self.find_faces,
                "max_pixels": self.max_pixels,
                "dicom": self.dicom.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DecodeRequest:
        """Inverse of `to_json`. Raises ValueError/TypeError/KeyError on a malformed value."""
        fmt = data["output_format"]
        if fmt not in ("png", "webp"):
            raise ValueError("unknown output format")
        res = data["resolution"]
        return cls(output_format=fmt,
                   resolution=(int(res[0]), int(res[1])) if res is not None else None,
                   blur_faces=bool(data["blur_faces"]),
                   find_faces=bool(data.get("find_faces", False)),
                   max_pixels=int(data["max_pixels"]),
                   dicom=DicomRequest.from_json(data["dicom"]) if "dicom" in data
                   else DicomRequest())


@dataclass(frozen=True)
class DicomInfo:
    """What the decoder reports about a DICOM source (the supervisor HMACs `patient_id`)."""

    patient_id: str
    """The source PatientID, only ever turned into a keyed subject id by the supervisor."""
    caption: str
    """Values of the request's caption attributes after de-identification, comma-joined."""


@dataclass(frozen=True)
class DecodedImage:
    """A re-encoded image and what was stripped from its source."""

    data: bytes
    metadata_kinds: tuple[str, ...]
    """The metadata kinds the source carried (none survive in `data`)."""
    faces: int
    """Faces blurred."""
    faces_found: int = 0
    """Faces found and left as they are (`find_faces` without `blur_faces`)."""
    frames: tuple[bytes, ...] = ()
    """Further frames of a multi-frame source (DICOM), each encoded like `data`."""
    dicom: DicomInfo | None = None


Decoder = Callable[[bytes, DecodeRequest], DecodedImage]
"""Decode `raw` and re-encode it per the request; raises ImageRejected for this one image."""


def _looks_truncated(raw: bytes, fmt: str) -> bool:
    if fmt == "jpeg":
        # EOI must follow the first SOS; entropy-coded data cannot contain FF D9 (byte stuffing).
        sos = raw.find(b"\xff\xda")
        return sos < 0 or raw.rfind(b"\xff\xd9") < sos
    if fmt == "png":
        return b"IEND" not in raw[-32:]
    if fmt == "webp":
        return len(raw) < 12 or struct.unpack("<I", raw[4:8])[0] + 8 > len(raw)
    return False


def _normalise_mode(img: Image.Image) -> Image.Image:
    if img.mode in ("RGB", "RGBA", "L", "CMYK"):
        return img
    if img.mode in ("P", "PA", "LA", "1"):
        has_alpha = img.mode in ("PA", "LA") or "transparency" in img.info
        return img.convert("RGBA" if has_alpha else "RGB")
    if img.mode == "I;16":
        return img.point(lambda v: v / 257).convert("L")
    raise ImageRejected(RejectReason.UNSUPPORTED)


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Pixels converted from the embedded profile to sRGB; output mode RGB or RGBA."""
    alpha = img.getchannel("A") if img.mode == "RGBA" else None
    base = img.convert("RGB") if img.mode == "RGBA" else img
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            converted = ImageCms.profileToProfile(base, source, srgb, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            raise ImageRejected(RejectReason.COLOR_PROFILE) from None
        assert converted is not None  # inPlace=False always returns an image
        base = converted
    base = base.convert("RGB")
    if alpha is not None:
        base.putalpha(alpha)
    return base


def _decode(raw: bytes, fmt: str, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its pixel limit; we refuse both.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(raw), formats=[_PILLOW_FORMATS[fmt]]) as im:
                if im.width * im.height > max_pixels:
                    raise ImageRejected(RejectReason.DECOMPRESSION_BOMB)
                im.load()
                icc = im.info.get("icc_profile")
                oriented = ImageOps.exif_transpose(im) or im
                return _to_srgb(_normalise_mode(oriented), icc)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageRejected(RejectReason.DECOMPRESSION_BOMB) from None
        except MemoryError:
            raise ImageRejected(RejectReason.TOO_LARGE) from None
        except (UnidentifiedImageError, SyntaxError, ValueError, EOFError, struct.error,
                zlib.error, OSError):
            raise ImageRejected(RejectReason.CORRUPT) from None


@functools.cache
def _face_blurrer() -> FaceBlurrer:
    from secure_trainer.privacy.faces import FaceBlurrer  # OpenCV only when asked for

    return FaceBlurrer()  # loading the cascades once per process, not once per image


def decode_image(raw: bytes, request: DecodeRequest) -> DecodedImage:
    """Decode → orient → sRGB → blur → resize → encode → verify, in this process.

    Raises ImageRejected (unsupported, corrupt, truncated, bomb, colour profile, metadata that
    survived the encoder).
    """
    meta = inspect_bytes(raw)
    if meta.format in ("gif", "tiff"):
        raise ImageRejected(RejectReason.UNSUPPORTED)
    if meta.format not in _PILLOW_FORMATS:
        raise ImageRejected(RejectReason.CORRUPT)
    if _looks_truncated(raw, meta.format):
        raise ImageRejected(RejectReason.TRUNCATED)
    img = _decode(raw, meta.format, request.max_pixels)
    faces = found = 0
    if request.blur_faces:
        img, faces = _face_blurrer().blur(img)
    elif request.find_faces:
        found = len(_face_blurrer().detect(img))
    if request.resolution is not None:
        img = ImageOps.fit(img, request.resolution, Image.Resampling.LANCZOS)
    # SECURITY: a fresh image from raw pixels carries no `info` dict at all.
    clean = Image.frombytes(img.mode, img.size, img.tobytes())
    buf = io.BytesIO()
    if request.output_format == "png":
        clean.save(buf, "PNG", compress_level=6)
    else:
        # Lossless: `quality` is only compression effort; 100 is ~20x slower for ~0 gain.
        clean.save(buf, "WEBP", lossless=True, quality=60, method=4, exact=True)
    data = buf.getvalue()
    if inspect_bytes(data).has_any:  # fail closed if an encoder ever adds metadata
        raise ImageRejected(RejectReason.METADATA_SURVIVED)
    return DecodedImage(data=data, metadata_kinds=tuple(sorted(meta.kinds)), faces=faces,
                        faces_found=found)
