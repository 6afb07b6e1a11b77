"""Which metadata an image file carries, read from its container headers (pixels never decoded).

Walks JPEG segments, PNG chunks and WebP RIFF chunks directly, and the EXIF TIFF structure
inside them (GPS IFD, serial numbers, thumbnail, orientation), so a report does not depend on
what Pillow chooses to expose. Must never return or raise with metadata *values*, file names
or paths: the report holds booleans, the format and the orientation number only.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO

from secure_trainer.errors import DataRejected

__all__ = ["METADATA_KINDS", "MetaReport", "inspect", "inspect_bytes"]

# Names of the boolean `has_*` fields, in report order; `data scan` counts images per kind.
METADATA_KINDS: tuple[str, ...] = (
    "exif", "gps", "serial", "xmp", "iptc", "icc", "png_text", "comment", "thumbnail",
    "orientation",
)

_XMP_JPEG_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_EXT_ID = b"http://ns.adobe.com/xmp/extension/\x00"
_MAX_SEGMENTS = 4096  # a hostile file could hold endless tiny segments; stop early
_TAG_ORIENTATION, _TAG_EXIF_IFD, _TAG_GPS_IFD = 0x0112, 0x8769, 0x8825
_TAG_THUMB_OFFSET, _TAG_THUMB_STRIP = 0x0201, 0x0111
_SERIAL_TAGS = frozenset({0xA431, 0xA435, 0xC62F, 0x927C})  # body/lens serial, DNG serial, MakerNote


@dataclass
class MetaReport:
    """What one file carries. `format` is `jpeg`, `png`, `webp`, `bmp`, `gif`, `tiff` or `unknown`."""

    format: str = "unknown"
    has_exif: bool = False
    has_gps: bool = False
    has_serial: bool = False  # camera/lens serial or a MakerNote (which usually holds one)
    has_xmp: bool = False
    has_iptc: bool = False
    has_icc: bool = False
    has_png_text: bool = False  # tEXt / zTXt / iTXt
    has_comment: bool = False  # JPEG COM segment
    has_thumbnail: bool = False  # EXIF IFD1 thumbnail
    orientation: int | None = None  # EXIF orientation 1..8, when present

    @property
    def has_orientation(self) -> bool:
        """True when an EXIF orientation other than 1 (upright) is set."""
        return self.orientation is not None and self.orientation != 1

    @property
    def kinds(self) -> frozenset[str]:
        """The METADATA_KINDS present in this file."""
        present = {f.name[4:] for f in fields(self) if f.name.startswith("has_")
                   and getattr(self, f.name)}
        if self.has_orientation:
            present.add("orientation")
        return frozenset(present)

    @property
    def has_any(self) -> bool:
        """True when the file carries any metadata kind at all."""
        return bool(self.kinds)


def inspect(path: Path) -> MetaReport:
    """Report the metadata kinds of the image at `path` from its headers only.

    A file of an unrecognised format yields `format="unknown"` and no kinds; a malformed
    header yields what could be read before the damage. Raises DataRejected (without the
    path) only when the file cannot be opened or read at all.
    """
    try:
        with open(path, "rb") as fh:
            return _inspect_stream(fh)
    except OSError:
        raise DataRejected("could not read an image file for metadata inspection") from None


def inspect_bytes(data: bytes) -> MetaReport:
    """`inspect` for an encoded image held in memory (the sanitizer checks its own output)."""
    return _inspect_stream(io.BytesIO(data))


def _inspect_stream(fh: BinaryIO) -> MetaReport:
    head = fh.read(16)
    fh.seek(0)
    report = MetaReport()
    if head.startswith(b"\xff\xd8"):
        report.format = "jpeg"
        _walk_jpeg(fh, report)
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        report.format = "png"
        _walk_png(fh, report)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        report.format = "webp"
        _walk_webp(fh, report)
    elif head.startswith(b"BM"):
        report.format = "bmp"
    elif head[:6] in (b"GIF87a", b"GIF89a"):
        report.format = "gif"
    elif head[:4] in (b"II*\x00", b"MM\x00*"):
        report.format = "tiff"
        report.has_exif = True  # a TIFF's header *is* an EXIF-style IFD structure
        fh.seek(0)
        _parse_exif(fh.read(1 << 20), report)
    return report


def _walk_jpeg(fh: BinaryIO, report: MetaReport) -> None:
    fh.seek(2)
    for _ in range(_MAX_SEGMENTS):
        marker = fh.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return
        code = marker[1]
        if code == 0xFF:  # fill byte: step one byte and retry
            fh.seek(-1, 1)
            continue
        if code in (0xD9, 0xDA):  # EOI, or SOS: entropy-coded data follows, headers are over
            return
        if 0xD0 <= code <= 0xD7 or code == 0x01:
            continue  # markers without a length
        raw_len = fh.read(2)
        if len(raw_len) < 2:
            return
        length = struct.unpack(">H", raw_len)[0] - 2
        if length < 0:
            return
        body = fh.read(length)
        if code == 0xE1:
            if body.startswith(b"Exif\x00\x00"):
                report.has_exif = True
                _parse_exif(body[6:], report)
            elif body.startswith((_XMP_JPEG_ID, _XMP_EXT_ID)):
                report.has_xmp = True
        elif code == 0xE2 and body.startswith(b"ICC_PROFILE\x00"):
            report.has_icc = True
        elif code == 0xED and body.startswith(b"Photoshop 3.0\x00"):
            report.has_iptc = True
        elif code == 0xFE:
            report.has_comment = True


def _walk_png(fh: BinaryIO, report: MetaReport) -> None:
    fh.seek(8)
    for _ in range(_MAX_SEGMENTS):
        header = fh.read(8)
        if len(header) < 8:
            return
        length, ctype = struct.unpack(">I4s", header)
        if ctype in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"):
            body = fh.read(min(length, 1 << 20))
            fh.seek(length - len(body) + 4, 1)
            if ctype == b"eXIf":
                report.has_exif = True
                _parse_exif(body, report)
            elif ctype == b"iCCP":
                report.has_icc = True
            else:
                report.has_png_text = True
                keyword = body.split(b"\x00", 1)[0]
                if keyword == b"XML:com.adobe.xmp":
                    report.has_xmp = True
                elif keyword.startswith(b"Raw profile type"):
                    # ImageMagick stores EXIF/IPTC/XMP as hex text chunks with these keywords.
                    kind = keyword[len(b"Raw profile type "):].lower()
                    report.has_exif |= kind == b"exif"
                    report.has_iptc |= kind in (b"iptc", b"8bim")
                    report.has_xmp |= kind == b"xmp"
        elif ctype == b"IEND":
            return
        else:
            fh.seek(length + 4, 1)  # skip data and CRC without reading pixels


def _walk_webp(fh: BinaryIO, report: MetaReport) -> None:
    fh.seek(12)
    for _ in range(_MAX_SEGMENTS):
        header = fh.read(8)
        if len(header) < 8:
            return
        ctype, length = struct.unpack("<4sI", header)
        padded = length + (length & 1)
        if ctype == b"EXIF":
            body = fh.read(min(length, 1 << 20))
            fh.seek(padded - len(body), 1)
            report.has_exif = True
            _parse_exif(body[6:] if body.startswith(b"Exif\x00\x00") else body, report)
        else:
            report.has_xmp |= ctype == b"XMP "
            report.has_icc |= ctype == b"ICCP"
            fh.seek(padded, 1)


def _parse_exif(tiff: bytes, report: MetaReport) -> None:
    """Walk IFD0, its Exif and GPS sub-IFDs and IFD1 of a TIFF-structured EXIF blob."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return
    endian = "<" if tiff[:2] == b"II" else ">"

    def entries(offset: int) -> tuple[dict[int, tuple[int, int]], int]:
        # Returns {tag: (type, value-or-offset)} and the next-IFD offset; empty on damage.
        if offset <= 0 or offset + 2 > len(tiff):
            return {}, 0
        count = struct.unpack_from(endian + "H", tiff, offset)[0]
        out: dict[int, tuple[int, int]] = {}
        for i in range(min(count, 512)):
            pos = offset + 2 + 12 * i
            if pos + 12 > len(tiff):
                return out, 0
            tag, typ, _n = struct.unpack_from(endian + "HHI", tiff, pos)
            if typ == 3:  # SHORT: value in the first two bytes of the field
                value = struct.unpack_from(endian + "H", tiff, pos + 8)[0]
            else:
                value = struct.unpack_from(endian + "I", tiff, pos + 8)[0]
            out[tag] = (typ, value)
        nxt_pos = offset + 2 + 12 * min(count, 512)
        nxt = struct.unpack_from(endian + "I", tiff, nxt_pos)[0] if nxt_pos + 4 <= len(tiff) else 0
        return out, nxt

    ifd0, ifd1_offset = entries(struct.unpack_from(endian + "I", tiff, 4)[0])
    if _TAG_ORIENTATION in ifd0:
        report.orientation = ifd0[_TAG_ORIENTATION][1]
    if _TAG_GPS_IFD in ifd0:
        report.has_gps = True
    report.has_serial |= bool(_SERIAL_TAGS & ifd0.keys())
    if _TAG_EXIF_IFD in ifd0:
        exif_ifd, _ = entries(ifd0[_TAG_EXIF_IFD][1])
        report.has_serial |= bool(_SERIAL_TAGS & exif_ifd.keys())
    if ifd1_offset and ifd1_offset != struct.unpack_from(endian + "I", tiff, 4)[0]:
        ifd1, _ = entries(ifd1_offset)
        if _TAG_THUMB_OFFSET in ifd1 or _TAG_THUMB_STRIP in ifd1:
            report.has_thumbnail = True
