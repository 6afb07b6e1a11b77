"""Recall and false positives of the face detectors on real photos from scikit-image's wheel.

Prints one JSON line per (detector, image set); the method is in
tests/unit/secure_trainer/privacy/face_scenes.py and the figures in docs/data-and-registry.md.
Usage (repo root, dev extras installed, face model fetched by `make install`):
    .venv/bin/python scripts/face_eval.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from secure_trainer.privacy.face_model import centerface_bytes
from secure_trainer.privacy.faces import (
    CenterFaceDetector,
    FaceBlurrer,
    HaarDetector,
)
from tests.unit.secure_trainer.privacy import face_scenes as fs


def main() -> int:
    """Score every detector on every set; exit 2 without the face model."""
    model = centerface_bytes()
    if model is None:
        print("no face model: run `make install` (scripts/fetch-face-model.sh)", file=sys.stderr)
        return 2
    detectors = {"centerface (default, 0.2)": FaceBlurrer(CenterFaceDetector(model)),
                 "centerface@0.35": FaceBlurrer(CenterFaceDetector(model, threshold=0.35)),
                 "haar": FaceBlurrer(HaarDetector())}
    sets = {f"lfw {size}px rot±{angle}": fs.scenes(size, angle)
            for size, angle in ((24, 0), (32, 0), (64, 0), (128, 0), (64, 15), (64, 30),
                                (64, 45))}
    sets["photos (astronaut, camera)"] = fs.whole_photos()
    sets["backgrounds, no face"] = [fs.Scene(fs.background(n), ()) for n in fs.BACKGROUNDS]
    sets["lfw non-face crops"] = [fs.Scene(c, ()) for c in fs.non_face_crops()]
    for set_name, images in sets.items():
        for det_name, blurrer in detectors.items():
            start = time.perf_counter()
            s = fs.score(blurrer, images)
            print(json.dumps({"set": set_name, "detector": det_name, "found": s.found,
                              "faces": s.faces, "recall": round(s.recall, 3),
                              "false_positives": s.false_positives, "images": s.images,
                              "fp_per_image": round(s.fp_per_image, 3),
                              "s_per_image": round((time.perf_counter() - start)
                                                   / max(1, s.images), 3)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
