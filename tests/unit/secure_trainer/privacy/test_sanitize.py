"""The sanitizer on real files: no metadata out (raw bytes), orientation, ICC, rejects, idempotency."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from secure_trainer.errors import DataRejected
from secure_trainer.privacy.imagemeta import inspect
from secure_trainer.privacy.pii import PiiMode
from secure_trainer.privacy.pseudonym import Pseudonymizer, load_or_create_key
from secure_trainer.privacy.sanitize import SanitizeOptions, SanitizeReport, sanitize_tree
from tests.unit.secure_trainer.privacy.test_sanitize_samples import (
    CANARIES,
    RAW_MARKERS,
    make_bomb_png,
    make_full_jpeg,
    make_full_png,
    make_truncated_jpeg,
    swapped_rgb_icc,
)

KEY = b"k" * 32


def _run(src: Path, dst: Path, **opts: object) -> SanitizeReport:
    keep = bool(opts.pop("keep_folder_names", False))
    return sanitize_tree(src, dst, pseudonymizer=Pseudonymizer(KEY, keep_folder_names=keep),
                         options=SanitizeOptions(**opts))  # type: ignore[arg-type]


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    subj = root / "10_Jane Doe"
    subj.mkdir(parents=True)
    make_full_jpeg(subj / "IMG_0001.jpg")
    (subj / "IMG_0001.txt").write_text("photo of jane, mail jane.doe@example.com, 1024x768")
    make_full_png(subj / "holiday.png")
    return root


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_no_metadata_survives_in_raw_bytes(src: Path, tmp_path: Path, fmt: str) -> None:
    """Every planted canary and metadata marker is absent from the output bytes."""
    report = _run(src, tmp_path / "dst", output_format=fmt)
    assert report.images_written == 2 and not report.rejected
    outputs = [p for p in (tmp_path / "dst").rglob(f"*.{fmt}")]
    assert len(outputs) == 2
    for out in outputs:
        raw = out.read_bytes()
        for needle in (*CANARIES, *RAW_MARKERS, b"Exif", b"XMP", b"ICC", b"8BIM"):
            assert needle not in raw, needle
        assert not inspect(out).has_any
        with Image.open(out) as im:
            assert not im.info.get("icc_profile") and not im.info.get("exif")
            assert "xmp" not in im.info and not im.getexif()
    removed = report.metadata_removed
    for kind in ("exif", "gps", "serial", "xmp", "iptc", "icc", "comment", "thumbnail",
                 "png_text", "orientation"):
        assert removed[kind] >= 1, kind


def test_orientation_applied_before_stripping(src: Path, tmp_path: Path) -> None:
    """Orientation 6 (rotate 90° CW): the 64x32 stored image comes out 32x64, red block top-right."""
    report = _run(src, tmp_path / "dst")
    jpeg_out = next(f for f in report.files if f.source_rel.suffix == ".jpg")
    with Image.open(tmp_path / "dst" / jpeg_out.rel_path) as im:
        rgb = im.convert("RGB")
    assert rgb.size == (32, 64)
    r, g, b = rgb.getpixel((28, 3))  # top-right: where the stored top-left block lands
    assert r > 200 and g < 60 and b < 60
    r, g, b = rgb.getpixel((3, 3))
    assert abs(r - 128) < 20 and abs(g - 128) < 20


def test_icc_profile_converted_to_srgb(tmp_path: Path) -> None:
    """A non-sRGB profile is applied to the pixels (values change), then dropped."""
    src = tmp_path / "src" / "1_x"
    src.mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 150, 100)).save(src / "a.png", icc_profile=swapped_rgb_icc())
    report = _run(tmp_path / "src", tmp_path / "dst")
    out = tmp_path / "dst" / report.files[0].rel_path
    assert b"iCCP" not in out.read_bytes()
    with Image.open(out) as im:
        pixel = im.convert("RGB").getpixel((8, 8))
    # The profile swaps red and blue colorants: converted pixels show the swap.
    assert all(abs(a - b) <= 3 for a, b in zip(pixel, (100, 150, 200), strict=True)), pixel


def test_bad_files_rejected_by_reason(tmp_path: Path) -> None:
    """Truncated JPEG, random bytes, bomb headers, GIF, symlink, root-level image: counted."""
    root = tmp_path / "src"
    sub = root / "5_set"
    sub.mkdir(parents=True)
    make_truncated_jpeg(sub / "cut.jpg")
    (sub / "random.png").write_bytes(os.urandom(2048))
    make_bomb_png(sub / "bomb.png")  # 40000² > 2x Pillow's limit: DecompressionBombError
    make_bomb_png(sub / "bomb2.png", side=9000)  # 81 MP: over our 64 MP guard, Pillow only warns
    Image.new("RGB", (8, 8)).save(sub / "anim.gif")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(sub / "ok.png")
    (sub / "link.png").symlink_to(sub / "ok.png")
    (root / "9_linked").symlink_to(sub)  # a symlinked folder is not entered either
    Image.new("RGB", (8, 8)).save(root / "top.png")
    report = _run(root, tmp_path / "dst")
    assert dict(report.rejected) == {"truncated": 1, "corrupt": 1, "decompression_bomb": 2,
                                     "unsupported": 1, "symlink": 2, "outside_subset": 1}
    assert report.images_written == 1
    written = [p for p in (tmp_path / "dst").rglob("*") if p.is_file()]
    assert len(written) == 1  # nothing half-written, no temp files left
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "dst").rglob("*"))


def test_pillow_warning_range_is_an_error(tmp_path: Path) -> None:
    """With our guard raised above Pillow's, its DecompressionBombWarning still rejects."""
    sub = tmp_path / "src" / "1_a"
    sub.mkdir(parents=True)
    make_bomb_png(sub / "b.png", side=9500)  # 90.25 MP: above Pillow's 89.5 MP warning limit
    report = _run(tmp_path / "src", tmp_path / "dst", max_pixels=10**9)
    assert report.rejected == {"decompression_bomb": 1}


def test_import_is_idempotent_and_source_untouched(src: Path, tmp_path: Path) -> None:
    """Same key → same pseudonyms and bytes; second run writes nothing new; source unchanged."""
    before = _tree_digest(src)
    first = _run(src, tmp_path / "dst")
    after_first = _tree_digest(tmp_path / "dst")
    second = _run(src, tmp_path / "dst")
    assert _tree_digest(tmp_path / "dst") == after_first
    assert second.images_written == 0 and second.images_unchanged == 2
    assert [f.rel_path for f in first.files] == [f.rel_path for f in second.files]
    assert _tree_digest(src) == before


def test_names_are_pseudonymous(src: Path, tmp_path: Path) -> None:
    """Folder keeps `10_` only; file names are HMACs; --keep-folder-names keeps the folder."""
    report = _run(src, tmp_path / "dst")
    for f in report.files:
        assert f.rel_path.parts[0].startswith("10_p")
        assert "Jane" not in str(f.rel_path) and "IMG" not in str(f.rel_path)
    other = sanitize_tree(src, tmp_path / "dst2", pseudonymizer=Pseudonymizer(b"z" * 32))
    assert {f.rel_path for f in other.files}.isdisjoint({f.rel_path for f in report.files})
    kept = _run(src, tmp_path / "dst3", keep_folder_names=True)
    assert all(f.rel_path.parts[0] == "10_Jane Doe" for f in kept.files)
    assert all("IMG" not in f.rel_path.name for f in kept.files)


@pytest.mark.parametrize(("mode", "expected"), [
    (PiiMode.REDACT, "photo of jane, mail <EMAIL>, 1024x768"),
    (PiiMode.REPORT, "photo of jane, mail jane.doe@example.com, 1024x768"),
])
def test_caption_pii_modes(src: Path, tmp_path: Path, mode: PiiMode, expected: str) -> None:
    """Redact replaces the value; report keeps it but counts it."""
    report = _run(src, tmp_path / "dst", pii_mode=mode)
    caption = next(c for f in report.files for c in f.captions)
    assert (tmp_path / "dst" / caption).read_text() == expected
    assert report.pii_findings == {"EMAIL": 1}


def test_caption_pii_reject_and_deny_list(src: Path, tmp_path: Path) -> None:
    """Reject mode drops the image with its caption; deny-list terms count as PII too."""
    report = _run(src, tmp_path / "dst", pii_mode=PiiMode.REJECT)
    assert report.rejected == {"caption_pii": 1} and report.images_written == 1
    assert not list((tmp_path / "dst").rglob("*.txt"))
    redacted = _run(src, tmp_path / "dst2", deny_list=("Jane",))
    caption = next(c for f in redacted.files for c in f.captions)
    assert (tmp_path / "dst2" / caption).read_text() == "photo of <DENYLIST>, mail <EMAIL>, 1024x768"


def test_resize_center_crop(src: Path, tmp_path: Path) -> None:
    """--resolution gives exactly that size."""
    report = _run(src, tmp_path / "dst", resolution=(48, 40))
    for f in report.files:
        with Image.open(tmp_path / "dst" / f.rel_path) as im:
            assert im.size == (48, 40)


def test_non_utf8_caption_rejected(tmp_path: Path) -> None:
    """A caption that is not UTF-8 rejects its image (Kohya would abort on it)."""
    sub = tmp_path / "src" / "2_a"
    sub.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(sub / "a.png")
    (sub / "a.txt").write_bytes(b"\xff\xfe\xfa caption")
    assert _run(tmp_path / "src", tmp_path / "dst").rejected == {"caption_encoding": 1}


def test_modes_and_alpha(tmp_path: Path) -> None:
    """Palette, greyscale, 16-bit and RGBA inputs come out as RGB/RGBA with alpha kept."""
    sub = tmp_path / "src" / "1_m"
    sub.mkdir(parents=True)
    Image.new("P", (8, 8), 3).save(sub / "p.png")
    Image.new("L", (8, 8), 90).save(sub / "l.jpg")
    Image.new("I;16", (8, 8), 40000).save(sub / "i16.png")
    Image.new("RGBA", (8, 8), (10, 20, 30, 77)).save(sub / "a.webp", lossless=True)
    report = _run(tmp_path / "src", tmp_path / "dst")
    assert report.images_written == 4 and not report.rejected
    modes = {}
    for f in report.files:
        with Image.open(tmp_path / "dst" / f.rel_path) as im:
            modes[f.source_rel.name] = (im.mode, im.getpixel((0, 0)))
    assert modes["a.webp"] == ("RGBA", (10, 20, 30, 77))
    assert modes["p.png"][0] == "RGB" and modes["l.jpg"][0] == "RGB"
    assert modes["i16.png"][1][0] == 155  # 40000 / 257, scaled not clipped


def test_source_must_be_a_folder(tmp_path: Path) -> None:
    """A missing source raises DataRejected without the path."""
    with pytest.raises(DataRejected) as err:
        _run(tmp_path / "nope", tmp_path / "dst")
    assert str(tmp_path) not in str(err.value)


def test_workspace_key_created_once_0600(tmp_path: Path) -> None:
    """The pseudonym key is created 0600 on first use and reused after."""
    key1 = load_or_create_key(tmp_path)
    key2 = load_or_create_key(tmp_path)
    assert key1 == key2 and len(key1) == 32
    mode = (tmp_path / ".secure-trainer" / "pseudonym.key").stat().st_mode & 0o777
    assert mode == 0o600


def test_duplicate_content_counted(tmp_path: Path) -> None:
    """Two sources with identical pixels are both written and counted as duplicates."""
    sub = tmp_path / "src" / "1_d"
    sub.mkdir(parents=True)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (5, 6, 7)).save(buf, "PNG")
    (sub / "a.png").write_bytes(buf.getvalue())
    (sub / "b.png").write_bytes(buf.getvalue())
    report = _run(tmp_path / "src", tmp_path / "dst")
    assert report.duplicates == 1 and report.images_written == 2
