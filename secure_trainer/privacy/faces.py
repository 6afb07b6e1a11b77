"""Optional face blurring with the Haar cascade that ships inside opencv-python-headless.

Nothing is downloaded: the cascade XML comes from `cv2.data.haarcascades`. Each detected face
rectangle (plus a margin) is pixelated and blurred so strongly that the detector no longer
fires on it; pixels outside those rectangles are left untouched. Never logs anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from secure_trainer.errors import ConfigError

__all__ = ["FaceBlurrer", "FaceBox"]

_CASCADES: tuple[str, ...] = ("haarcascade_frontalface_default.xml",
                              "haarcascade_profileface.xml")
_MARGIN = 0.15  # hair and jaw line sit outside the cascade's tight box
_PIXEL_BLOCKS = 6  # a face becomes at most 6x6 colour blocks before the blur


@dataclass(frozen=True)
class FaceBox:
    """A detected face rectangle in pixel coordinates (already widened by the margin)."""

    left: int
    top: int
    right: int
    bottom: int


def _overlap(a: FaceBox, b: FaceBox) -> float:
    """Intersection over the smaller box's area."""
    iw = max(0, min(a.right, b.right) - max(a.left, b.left))
    ih = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    smaller = min((a.right - a.left) * (a.bottom - a.top), (b.right - b.left) * (b.bottom - b.top))
    return (iw * ih) / smaller if smaller else 0.0


class FaceBlurrer:
    """Detects frontal and profile faces and destroys their detail in place of a copy.

    Raises ConfigError when the bundled cascade files cannot be loaded.
    """

    def __init__(self, *, min_face_fraction: float = 0.04) -> None:
        self._min_fraction = min_face_fraction
        self._cascades: list[cv2.CascadeClassifier] = []
        for name in _CASCADES:
            cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)  # type: ignore[attr-defined]
            if cascade.empty():
                raise ConfigError("opencv's bundled face cascade could not be loaded")
            self._cascades.append(cascade)

    def detect(self, img: Image.Image) -> list[FaceBox]:
        """Face rectangles in `img` (any mode), widened by a margin and clipped to the image."""
        grey = np.asarray(img.convert("L"))
        grey = cv2.equalizeHist(grey)
        height, width = grey.shape
        min_side = max(20, int(min(width, height) * self._min_fraction))
        boxes: list[FaceBox] = []
        for cascade in self._cascades:
            found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4,
                                             minSize=(min_side, min_side))
            for x, y, w, h in (found if len(found) else []):
                mx, my = int(w * _MARGIN), int(h * _MARGIN)
                box = FaceBox(max(0, x - mx), max(0, y - my),
                              min(width, x + w + mx), min(height, y + h + my))
                # Frontal and profile cascades often fire on the same face: count it once.
                if all(_overlap(box, seen) < 0.3 for seen in boxes):
                    boxes.append(box)
        return boxes

    def blur(self, img: Image.Image) -> tuple[Image.Image, int]:
        """A copy of `img` with every detected face pixelated and blurred; and the face count."""
        boxes = self.detect(img)
        if not boxes:
            return img, 0
        out = img.copy()
        for box in boxes:
            region = out.crop((box.left, box.top, box.right, box.bottom))
            w, h = region.size
            small = region.resize((max(1, min(w, _PIXEL_BLOCKS)), max(1, min(h, _PIXEL_BLOCKS))),
                                  Image.Resampling.BOX)
            blocky = np.asarray(small.resize((w, h), Image.Resampling.NEAREST))
            # A wide Gaussian (sigma ~ a fifth of the box) on top averages the blocks into one
            # blob: a light blur would leave a smooth face-shaped pattern the cascade still finds.
            smooth = cv2.GaussianBlur(blocky, (0, 0), max(1.0, min(w, h) / 5))
            out.paste(Image.fromarray(smooth), (box.left, box.top))
        return out, len(boxes)
