"""Face-detector evaluation on real photographs that ship in scikit-image's wheel.

Faces: `skimage.data.lfw_subset()` — 100 real LFW face crops and 100 non-face crops of LFW
backgrounds (25x25 grey). Backgrounds: scikit-image's real photos without a human face
(brick, grass, gravel, coffee, a cat, a rocket, the Hubble deep field, a motorcycle, coins).
A scene is one background at 640x480 with up to four faces pasted at one size and rotation
(an elliptical soft mask, so no square edge), positions drawn from a seeded generator.
Whole photos with one real face: `astronaut` and `camera` (the cameraman).
Scoring (what blurring needs): a face counts as found when one detected box (as blurred:
widened by the margin) covers at least half of its box; a detected box that covers no face
box by a tenth of its own area is a false positive. Used by tests and scripts/face_eval.py.
Must never download anything (every image here ships inside the installed wheel).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from skimage import data as skdata

from secure_trainer.privacy.faces import FaceBlurrer, FaceBox

BACKGROUNDS = ("brick", "grass", "gravel", "coffee", "chelsea", "rocket", "hubble_deep_field",
               "motorcycle_left", "coins")
_W, _H = 640, 480
_PER_SCENE = 4
Box = tuple[int, int, int, int]  # left, top, right, bottom


def lfw() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(faces, non-faces) as uint8 grey 25x25 arrays."""
    crops = (skdata.lfw_subset() * 255).round().astype(np.uint8)
    return list(crops[:100]), list(crops[100:])


def background(name: str) -> np.ndarray:
    """A scikit-image sample photo as 640x480 RGB (cover + centre crop)."""
    img = skdata.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skdata, name)()
    pil = Image.fromarray(img).convert("RGB")
    scale = max(_W / pil.width, _H / pil.height)
    pil = pil.resize((max(_W, round(pil.width * scale)), max(_H, round(pil.height * scale))),
                     Image.Resampling.LANCZOS)
    left, top = (pil.width - _W) // 2, (pil.height - _H) // 2
    return np.asarray(pil.crop((left, top, left + _W, top + _H))).copy()


def _paste(canvas: np.ndarray, face: np.ndarray, size: int, angle: float, x: int,
           y: int) -> Box:
    """Paste `face` scaled to `size` and rotated by `angle` degrees with its top-left corner
    at (x, y); returns the rotated face's bounding box."""
    big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, (size // 2, size // 2), (int(size * 0.48), int(size * 0.5)), 0, 0, 360,
                1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, size / 25))
    rot = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    side = int(np.ceil(size * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle))))))
    rot[:, 2] += (side - size) / 2
    big = cv2.warpAffine(big, rot, (side, side), flags=cv2.INTER_CUBIC)
    mask = cv2.warpAffine(mask, rot, (side, side), flags=cv2.INTER_LINEAR)
    region = canvas[y:y + side, x:x + side].astype(np.float32)
    alpha = mask[..., None]
    canvas[y:y + side, x:x + side] = (alpha * big[..., None] + (1 - alpha) * region).astype(
        np.uint8)
    ys, xs = np.nonzero(mask > 0.5)
    return (x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1)


@dataclass(frozen=True)
class Scene:
    """An RGB image and the boxes of the faces pasted into it."""

    image: np.ndarray
    faces: tuple[Box, ...]


def scenes(size: int, angle: float, *, seed: int = 0, limit: int = 100) -> list[Scene]:
    """The first `limit` LFW faces at `size` px and +/-`angle` degrees (alternating), four per
    scene on the backgrounds in turn, at seeded non-overlapping positions."""
    faces, _ = lfw()
    rng = np.random.default_rng(seed)
    out: list[Scene] = []
    for start in range(0, min(limit, len(faces)), _PER_SCENE):
        canvas = background(BACKGROUNDS[(start // _PER_SCENE) % len(BACKGROUNDS)])
        boxes: list[Box] = []
        for i, face in enumerate(faces[start:start + _PER_SCENE]):
            side = int(np.ceil(size * 1.42)) + 2
            for _ in range(200):  # rejection sampling: faces never overlap
                x, y = int(rng.integers(0, _W - side)), int(rng.integers(0, _H - side))
                if all(x + side < b[0] or b[2] < x or y + side < b[1] or b[3] < y
                       for b in boxes):
                    break
            sign = 1 if (start + i) % 2 == 0 else -1
            boxes.append(_paste(canvas, face, size, sign * angle, x, y))
        out.append(Scene(canvas, tuple(boxes)))
    return out


def non_face_crops(size: int = 96) -> list[np.ndarray]:
    """The 100 LFW non-face crops, each scaled to `size` and centred on a 2x grey canvas."""
    _, others = lfw()
    out = []
    for crop in others:
        canvas = np.full((size * 2, size * 2, 3), 128, np.uint8)
        big = cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)
        canvas[size // 2:size // 2 + size, size // 2:size // 2 + size] = big[..., None]
        out.append(canvas)
    return out


def whole_photos() -> list[Scene]:
    """Two real photos, one face each (boxes drawn by hand around forehead to chin)."""
    return [Scene(np.asarray(skdata.astronaut()), ((175, 55, 275, 185),)),
            Scene(np.asarray(Image.fromarray(skdata.camera()).convert("RGB")),
                  ((205, 115, 255, 190),))]


def _covered(face: Box, box: FaceBox) -> float:
    iw = max(0, min(face[2], box.right) - max(face[0], box.left))
    ih = max(0, min(face[3], box.bottom) - max(face[1], box.top))
    return iw * ih / ((face[2] - face[0]) * (face[3] - face[1]))


def _hits_a_face(box: FaceBox, faces: tuple[Box, ...]) -> bool:
    area = (box.right - box.left) * (box.bottom - box.top)
    for face in faces:
        iw = max(0, min(face[2], box.right) - max(face[0], box.left))
        ih = max(0, min(face[3], box.bottom) - max(face[1], box.top))
        if area and iw * ih / area >= 0.1:
            return True
    return False


@dataclass(frozen=True)
class Score:
    """Faces found out of faces present, and false-positive boxes over images."""

    found: int
    faces: int
    false_positives: int
    images: int

    @property
    def recall(self) -> float:
        """Found / present."""
        return self.found / self.faces if self.faces else 1.0

    @property
    def fp_per_image(self) -> float:
        """False-positive boxes per image."""
        return self.false_positives / self.images if self.images else 0.0


def score(blurrer: FaceBlurrer, images: list[Scene]) -> Score:
    """Run `blurrer.detect` on each scene and score it as described in the module docstring."""
    found = total = fps = 0
    for scene in images:
        boxes = blurrer.detect(Image.fromarray(scene.image))
        total += len(scene.faces)
        found += sum(any(_covered(f, b) >= 0.5 for b in boxes) for f in scene.faces)
        fps += sum(not _hits_a_face(b, scene.faces) for b in boxes)
    return Score(found, total, fps, len(images))
