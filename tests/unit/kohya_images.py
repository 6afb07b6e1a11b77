"""Small real image/caption files for the Kohya data tests (written with PIL, nothing mocked)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}


def write_image(
    path: Path,
    size: tuple[int, int] = (64, 64),
    colour: tuple[int, int, int] = (200, 40, 40),
    *,
    exif_orientation: int | None = None,
) -> Path:
    """Write a solid-colour image at `path` (format from the suffix, any case)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    fmt = _FORMATS.get(path.suffix.lower(), "PNG")
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(path, format=fmt, exif=exif.tobytes())
    else:
        image.save(path, format=fmt)
    return path


def write_caption(path: Path, text: str) -> Path:
    """Write a UTF-8 caption file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_folder(
    folder: Path,
    count: int,
    size: tuple[int, int] = (64, 64),
    ext: str = ".png",
    caption: str | None = None,
    caption_ext: str = ".txt",
) -> Path:
    """`count` images (and captions when given) in `folder`."""
    for i in range(count):
        write_image(folder / f"img{i:03d}{ext}", size)
        if caption is not None:
            write_caption(folder / f"img{i:03d}{caption_ext}", caption)
    return folder
