"""Render a DICOM dataset's pixel data to PNG frames: modality rescale, window, 8/16-bit.

Runs on the decoder side. SECURITY: never opens a file; the PNGs are built from a fresh array
(no text chunks), so nothing of the header reaches them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space, get_decoder

__all__ = ["decoder_available", "frame_count", "render_frames"]


def decoder_available(ds: Dataset) -> bool:
    """Whether an installed pydicom pixel handler decodes this transfer syntax."""
    try:
        return bool(get_decoder(ds.file_meta.TransferSyntaxUID).is_available)
    except (NotImplementedError, AttributeError, ValueError):
        return False


def frame_count(ds: Dataset) -> int:
    """Number of frames (1 when NumberOfFrames is absent)."""
    return max(1, int(ds.get("NumberOfFrames", 1) or 1))


def _window(ds: Dataset, window: tuple[float, float] | None) -> tuple[float, float] | None:
    if window is not None:
        return window
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    # Multi-valued: the first is the primary window.
    first = (lambda v: float(v[0]) if hasattr(v, "__len__") and not isinstance(v, str) else float(v))
    return first(center), first(width)


def _grey(frame: np.ndarray, ds: Dataset, window: tuple[float, float] | None,
          bits: int) -> Image.Image:
    values = frame.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) \
        + float(ds.get("RescaleIntercept", 0) or 0)
    win = _window(ds, window)
    if win is not None and win[1] > 0:
        lo, hi = win[0] - win[1] / 2, win[0] + win[1] / 2
    else:
        lo, hi = float(values.min()), float(values.max())
    scaled = np.clip((values - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 1.0 - scaled  # MONOCHROME1: low values are white
    if bits == 16:
        return Image.fromarray((scaled * 65535).round().astype(np.uint16))
    return Image.fromarray((scaled * 255).round().astype(np.uint8), "L")


def _colour(frame: np.ndarray, ds: Dataset) -> Image.Image:
    pi = str(ds.get("PhotometricInterpretation", "RGB"))
    if pi.startswith("YBR"):
        frame = convert_color_space(frame, pi, "RGB")
    if frame.dtype != np.uint8:
        frame = (frame.astype(np.float64) / max(float(frame.max()), 1.0) * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(frame), "RGB")


def render_frames(ds: Dataset, window: tuple[float, float] | None, bits: int) -> list[bytes]:
    """One PNG per frame. Raises pydicom/numpy errors on bad pixel data (caller rejects)."""
    arr = ds.pixel_array
    n = frame_count(ds)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = [arr] if n == 1 else list(arr)
    out: list[bytes] = []
    for frame in frames:
        img = _colour(frame, ds) if samples == 3 else _grey(frame, ds, window, bits)
        buf = io.BytesIO()
        img.save(buf, "PNG", compress_level=6)
        out.append(buf.getvalue())
    return out
