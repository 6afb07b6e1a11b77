"""imagemeta.inspect reports each metadata kind from headers, for real JPEG/PNG/WebP files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from secure_trainer.errors import DataRejected
from secure_trainer.privacy.imagemeta import METADATA_KINDS, inspect
from tests.unit.secure_trainer.privacy.test_sanitize_samples import (
    make_bomb_png,
    make_exif,
    make_full_jpeg,
    make_full_png,
    srgb_icc,
)


def test_jpeg_every_kind(tmp_path: Path) -> None:
    """A JPEG with EXIF/GPS/serial/thumbnail/orientation, XMP, IPTC, ICC and COM reports all."""
    rep = inspect(make_full_jpeg(tmp_path / "a.jpg"))
    assert rep.format == "jpeg"
    assert rep.orientation == 6
    assert rep.kinds == {"exif", "gps", "serial", "xmp", "iptc", "icc", "comment", "thumbnail",
                         "orientation"}
    assert rep.kinds <= set(METADATA_KINDS)


def test_png_every_kind(tmp_path: Path) -> None:
    """A PNG with text chunks, iCCP and eXIf reports text, ICC, XMP (iTXt) and EXIF parts."""
    rep = inspect(make_full_png(tmp_path / "a.png"))
    assert rep.format == "png"
    assert {"png_text", "icc", "xmp", "exif", "gps", "serial", "thumbnail"} <= rep.kinds
    assert "orientation" not in rep.kinds  # orientation 1 is upright: nothing to apply


def test_webp_chunks(tmp_path: Path) -> None:
    """WebP EXIF, XMP and ICCP chunks are seen."""
    path = tmp_path / "a.webp"
    Image.new("RGB", (8, 8)).save(path, exif=b"Exif\x00\x00" + make_exif(3),
                                  icc_profile=srgb_icc(), xmp=b"<x:xmpmeta/>")
    rep = inspect(path)
    assert rep.format == "webp"
    assert {"exif", "xmp", "icc", "gps", "orientation"} <= rep.kinds
    assert rep.orientation == 3


def test_clean_files_report_nothing(tmp_path: Path) -> None:
    """Files Pillow writes without metadata report no kinds; a bomb header is only parsed."""
    for name in ("c.png", "c.jpg", "c.webp", "c.bmp"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
        rep = inspect(tmp_path / name)
        assert not rep.has_any, name
    assert inspect(make_bomb_png(tmp_path / "bomb.png")).format == "png"


def test_unknown_and_damaged(tmp_path: Path) -> None:
    """Random bytes are `unknown`; a JPEG cut inside its EXIF yields no crash."""
    (tmp_path / "r.png").write_bytes(b"\x00garbage" * 10)
    assert inspect(tmp_path / "r.png").format == "unknown"
    raw = make_full_jpeg(tmp_path / "a.jpg").read_bytes()
    for cut in (4, 30, 60, 200, 400):
        (tmp_path / "cut.jpg").write_bytes(raw[:cut])
        assert inspect(tmp_path / "cut.jpg").format == "jpeg"


def test_unreadable_raises_without_path(tmp_path: Path) -> None:
    """A missing file raises DataRejected whose message has no path."""
    with pytest.raises(DataRejected) as err:
        inspect(tmp_path / "secret-name.jpg")
    assert "secret-name" not in str(err.value) and str(tmp_path) not in str(err.value)
