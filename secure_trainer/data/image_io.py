"""Training image files: extension filter, header-only size probe, load → resize → crop → tensor.

SECURITY: never logs; errors never carry a path or file name (callers pass a record index instead).
Images are decoded in memory only — nothing is written anywhere.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from secure_trainer.data.buckets import Size, crop_offsets
from secure_trainer.errors import DataRejected

_BASE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_OPTIONAL_EXTENSIONS = {".avif": ("pillow_avif",), ".jxl": ("jxlpy", "pillow_jxl")}

_EXIF_ORIENTATION = 0x0112
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height

_PIL_FILTERS = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX}
_CV2_FILTERS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "linear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}
RESIZE_INTERPOLATIONS = frozenset(_PIL_FILTERS) | frozenset(_CV2_FILTERS)


def image_extensions() -> frozenset[str]:
    """The accepted suffixes: §1's list in all-lower and all-upper case (case-sensitive match)."""
    exts = list(_BASE_EXTENSIONS)
    for ext, modules in _OPTIONAL_EXTENSIONS.items():
        if any(importlib.util.find_spec(m) is not None for m in modules):
            exts.append(ext)
    return frozenset(exts + [e.upper() for e in exts])


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder` (not recursive), de-duplicated and sorted by path.

    Raises DataRejected when the folder cannot be listed.
    """
    allowed = image_extensions()
    try:
        entries = list(folder.iterdir())
    except OSError:
        raise DataRejected("an image folder could not be listed (check permissions)") from None
    # Glob `*.<ext>` in sd-scripts skips dot-files; do the same.
    found = {
        p for p in entries if p.suffix in allowed and not p.name.startswith(".") and p.is_file()
    }
    return sorted(found)


def probe_size(path: Path, index: int) -> Size:
    """(width, height) after EXIF orientation, read from the header only (no pixel decode).

    Raises DataRejected (naming only the record index) when the file is not a readable image.
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise DataRejected(f"image #{index} could not be read as an image") from None
    if orientation in _ROTATED_ORIENTATIONS:
        width, height = height, width
    return width, height


def _decode_rgb(path: Path, index: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise DataRejected(f"image #{index} could not be decoded") from None
    return np.array(rgb, dtype=np.uint8)  # a writable copy


def resize(image: np.ndarray, size: Size, interpolation: str | None) -> np.ndarray:
    """Resize an RGB uint8 HWC array to `size` (w, h): default area when shrinking both sides,
    else Lanczos (PIL for lanczos/box, OpenCV for the rest, as sd-scripts). Raises nothing.
    """
    height, width = image.shape[:2]
    if (width, height) == size:
        return image
    if interpolation is None:
        interpolation = "area" if width >= size[0] and height >= size[1] else "lanczos"
    if interpolation in _PIL_FILTERS:
        resized = Image.fromarray(image).resize(size, resample=_PIL_FILTERS[interpolation])
        return np.array(resized, dtype=np.uint8)
    return cv2.resize(image, size, interpolation=_CV2_FILTERS[interpolation])


def color_jitter(image: np.ndarray, rng: random.Random) -> np.ndarray:
    """sd-scripts' weak colour augmentation: 1/3 of the time a ±8 hue shift or a 0.95–1.05 gamma."""
    if rng.random() > 0.33:
        return image
    if rng.random() > 0.5:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        shift = rng.uniform(-8, 8) % 180
        hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.float32) + shift) % 180).astype(np.uint8)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    gamma = rng.uniform(0.95, 1.05)
    return np.clip(image.astype(np.float32) ** gamma, 0, 255).astype(np.uint8)


def to_training_tensor(image: np.ndarray) -> torch.Tensor:
    """An RGB uint8 HWC array → [3,H,W] float32 in [-1,1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(torch.float32)
    return tensor / 127.5 - 1.0


def decode_training_image(
    path: Path,
    index: int,
    *,
    expected_size: Size,
    resized: Size,
    bucket: Size,
    interpolation: str | None,
    flip: bool,
    crop_rng: random.Random | None,
    color_rng: random.Random | None,
) -> np.ndarray:
    """Decode, cover-resize to `resized`, crop to `bucket`, augment → RGB uint8 HWC array
    (`to_training_tensor` makes the training tensor of it).

    `crop_rng` given ⇒ random crop offset, else centre; `color_rng` given ⇒ colour jitter.
    Raises DataRejected when the file is unreadable or changed size since the dataset was scanned.
    No torch call: the prefetch thread runs this, and a torch op there would start a second
    OpenMP pool beside the training step's on the same cores.
    """
    image = _decode_rgb(path, index)
    if (image.shape[1], image.shape[0]) != expected_size:
        raise DataRejected(f"image #{index} changed while training (size differs from the scan)")
    image = resize(image, resized, interpolation)
    left, top = crop_offsets(resized, bucket, crop_rng)
    image = image[top : top + bucket[1], left : left + bucket[0]]
    if color_rng is not None:
        image = color_jitter(image, color_rng)
    if flip:
        image = image[:, ::-1]
    return image
