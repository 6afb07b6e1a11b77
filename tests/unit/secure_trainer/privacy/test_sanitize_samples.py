"""Builders of real image files that carry every metadata kind, with planted canary strings.

Shared by test_imagemeta.py and test_sanitize*.py (import as `tests.unit.secure_trainer.privacy.test_sanitize_samples`);
the tests here check that the builders really planted what the other tests look for.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

# Strings planted in metadata; none may survive sanitizing (searched in the raw output bytes).
CANARIES: tuple[bytes, ...] = (
    b"MAKE-CANARY", b"SERIAL-CANARY-4711", b"GPS-CANARY", b"XMP-CANARY", b"IPTC-CANARY",
    b"COMMENT-CANARY", b"PNG-TEXT-CANARY", b"PNG-ZTXT-CANARY", b"PNG-ITXT-CANARY",
)
RAW_MARKERS: tuple[bytes, ...] = (
    b"Exif\x00\x00", b"http://ns.adobe.com/xap", b"Photoshop 3.0", b"ICC_PROFILE", b"tEXt",
    b"zTXt", b"iTXt", b"iCCP", b"eXIf", b"\xff\xfe",
)


def _ifd(entries: list[tuple[int, int, int, bytes]], base: int, next_ifd: int) -> bytes:
    """One little-endian IFD at absolute offset `base`; values > 4 bytes follow the IFD."""
    head = struct.pack("<H", len(entries))
    data_off = base + 2 + 12 * len(entries) + 4
    body, data = b"", b""
    for tag, typ, count, value in sorted(entries):
        if len(value) <= 4:
            body += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\x00")
        else:
            body += struct.pack("<HHII", tag, typ, count, data_off + len(data))
            data += value + (b"\x00" if len(value) % 2 else b"")
    return head + body + struct.pack("<I", next_ifd) + data


def _ascii(text: bytes) -> tuple[int, bytes]:
    return len(text) + 1, text + b"\x00"


def make_exif(orientation: int = 6) -> bytes:
    """A TIFF EXIF blob: IFD0 (Make, Orientation), Exif IFD (serial), GPS IFD, IFD1 thumbnail."""
    thumb = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 255, 0)).save(thumb, "JPEG")
    thumb_bytes = thumb.getvalue()
    n, make = _ascii(b"MAKE-CANARY")
    ns, serial = _ascii(b"SERIAL-CANARY-4711")
    ng, gps_area = _ascii(b"ASCII\x00\x00\x00GPS-CANARY")
    rationals = struct.pack("<6I", 51, 1, 30, 1, 12, 1)
    # Lay out: header(8) | IFD0 | ExifIFD | GPS IFD | IFD1 | thumbnail; sizes computed by pass.
    ifd0_entries = [(0x010F, 2, n, make), (0x0112, 3, 1, struct.pack("<H", orientation)),
                    (0x8769, 4, 1, b"\0\0\0\0"), (0x8825, 4, 1, b"\0\0\0\0")]
    exif_entries = [(0xA431, 2, ns, serial)]
    gps_entries = [(0x0001, 2, 2, b"N\x00"), (0x0002, 5, 3, rationals),
                   (0x001B, 7, ng - 1, gps_area)]
    ifd1_entries = [(0x0201, 4, 1, b"\0\0\0\0"), (0x0202, 4, 1, struct.pack("<I", len(thumb_bytes)))]
    off0 = 8
    size0 = len(_ifd(ifd0_entries, off0, 0))
    off_exif = off0 + size0
    off_gps = off_exif + len(_ifd(exif_entries, off_exif, 0))
    off1 = off_gps + len(_ifd(gps_entries, off_gps, 0))
    off_thumb = off1 + len(_ifd(ifd1_entries, off1, 0))
    ifd0_entries[2] = (0x8769, 4, 1, struct.pack("<I", off_exif))
    ifd0_entries[3] = (0x8825, 4, 1, struct.pack("<I", off_gps))
    ifd1_entries[0] = (0x0201, 4, 1, struct.pack("<I", off_thumb))
    return (b"II*\x00" + struct.pack("<I", off0) + _ifd(ifd0_entries, off0, off1)
            + _ifd(exif_entries, off_exif, 0) + _ifd(gps_entries, off_gps, 0)
            + _ifd(ifd1_entries, off1, 0) + thumb_bytes)


def _xmp_packet() -> bytes:
    return (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            b'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="XMP-CANARY"/></rdf:RDF>'
            b'</x:xmpmeta><?xpacket end="w"?>')


def _iptc_segment() -> bytes:
    """An APP13 Photoshop segment with an IPTC-IIM by-line (2:80)."""
    value = b"IPTC-CANARY"
    iptc = b"\x1c\x02\x50" + struct.pack(">H", len(value)) + value
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    if len(iptc) % 2:
        resource += b"\x00"
    body = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


def srgb_icc() -> bytes:
    """A real sRGB ICC profile built by LittleCMS (no file from disk)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + _s15(x) + _s15(y) + _s15(z)


def swapped_rgb_icc() -> bytes:
    """A v2 matrix/TRC RGB profile with red and blue colorants swapped (gamma 2.2).

    Converting through it to sRGB swaps R and B, so a test can tell conversion from copying.
    """
    desc_text = b"swapped\x00"
    desc = (b"desc\x00\x00\x00\x00" + struct.pack(">I", len(desc_text)) + desc_text
            + b"\x00" * 8 + b"\x00\x00\x00" + b"\x00" * 67)
    curv = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, int(2.2 * 256)) + b"\x00\x00"
    tags = [(b"desc", desc), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", _xyz(0.1431, 0.0606, 0.7141)), (b"gXYZ", _xyz(0.3851, 0.7169, 0.0971)),
            (b"bXYZ", _xyz(0.4361, 0.2225, 0.0139)), (b"rTRC", curv), (b"gTRC", curv),
            (b"bTRC", curv)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body = body + b"\x00" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (struct.pack(">I", offset + len(data)) + b"\x00" * 4 + struct.pack(">I", 0x02100000)
              + b"mntrRGB XYZ " + b"\x00" * 12 + b"acsp" + b"\x00" * 28
              + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\x00" * 48)
    return header + struct.pack(">I", len(tags)) + table + data


def oriented_pixels(size: tuple[int, int] = (64, 32)) -> Image.Image:
    """Grey image, stored upright-wise, with a red 8x8 block in the stored top-left corner."""
    img = Image.new("RGB", size, (128, 128, 128))
    img.paste((255, 0, 0), (0, 0, 8, 8))
    return img


def make_full_jpeg(path: Path) -> Path:
    """JPEG with EXIF (GPS, serial, IFD1 thumbnail, orientation 6), XMP, IPTC, ICC and COM."""
    buf = io.BytesIO()
    oriented_pixels().save(buf, "JPEG", quality=95, exif=b"Exif\x00\x00" + make_exif(6), icc_profile=srgb_icc(),
                           comment=b"COMMENT-CANARY", xmp=_xmp_packet())
    raw = buf.getvalue()
    path.write_bytes(raw[:2] + _iptc_segment() + raw[2:])  # IPTC right after SOI
    return path


def make_full_png(path: Path) -> Path:
    """PNG with tEXt, zTXt, iTXt (incl. an XMP packet), iCCP and eXIf chunks."""
    info = PngInfo()
    info.add_text("Author", "PNG-TEXT-CANARY")
    info.add_text("Comment", "PNG-ZTXT-CANARY " * 8, zip=True)
    info.add_itxt("Description", "PNG-ITXT-CANARY", lang="en", tkey="Description")
    info.add_itxt("XML:com.adobe.xmp", _xmp_packet().decode())
    oriented_pixels().save(path, "PNG", pnginfo=info, icc_profile=srgb_icc(), exif=make_exif(1))
    return path


def make_truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in the middle of its entropy-coded data."""
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buf, "JPEG", quality=90)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def make_bomb_png(path: Path, side: int = 40000) -> Path:
    """A tiny PNG whose header claims side x side pixels (over Pillow's bomb limit)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)

    def chunk(ctype: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + ctype + data + struct.pack(
            ">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def test_full_jpeg_carries_every_canary(tmp_path: Path) -> None:
    """The builder planted each canary and marker in the raw bytes (else other tests are void)."""
    raw = make_full_jpeg(tmp_path / "a.jpg").read_bytes()
    for canary in (b"MAKE-CANARY", b"SERIAL-CANARY-4711", b"GPS-CANARY", b"XMP-CANARY",
                   b"IPTC-CANARY", b"COMMENT-CANARY"):
        assert canary in raw
    for marker in (b"Exif\x00\x00", b"http://ns.adobe.com/xap", b"Photoshop 3.0", b"ICC_PROFILE",
                   b"\xff\xfe"):
        assert marker in raw
    with Image.open(tmp_path / "a.jpg") as im:
        assert im.getexif()[0x0112] == 6
        assert im.getexif().get_ifd(0x8825)


def test_full_png_carries_every_chunk(tmp_path: Path) -> None:
    """The PNG builder wrote text, compressed text, international text, ICC and EXIF chunks."""
    raw = make_full_png(tmp_path / "a.png").read_bytes()
    for marker in (b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"eXIf", b"PNG-TEXT-CANARY",
                   b"PNG-ITXT-CANARY", b"XMP-CANARY"):
        assert marker in raw
