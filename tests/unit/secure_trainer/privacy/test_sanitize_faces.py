"""Face blurring: CenterFace (the default) on a real photo (scikit-image's astronaut), the Haar
fallback on a drawn face the cascade really detects, and the hash-pinned model loading."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from secure_trainer.privacy.face_model import (
    CENTERFACE_FILE,
    FaceModelRefused,
    centerface_bytes,
)
from secure_trainer.privacy.faces import FaceBlurrer, HaarDetector, default_detector
from secure_trainer.privacy.pseudonym import Pseudonymizer
from secure_trainer.privacy.sanitize import SanitizeOptions, sanitize_tree


def real_face_photo() -> Image.Image:
    """scikit-image's astronaut (Eileen Collins, NASA, public domain): one real face."""
    return Image.fromarray(skdata.astronaut())


def drawn_face_scene() -> Image.Image:
    """A 600x400 scene: a cartoon face (skin oval, hair, brows, eyes, nose, mouth) on the left
    and a striped pattern on the right, so 'the rest did not change' is a real check."""
    img = np.full((400, 600, 3), 90, np.uint8)
    cx, cy, s = 170, 200, 1.5
    cv2.ellipse(img, (cx, cy), (int(60 * s), int(80 * s)), 0, 0, 360, (220, 190, 170), -1)
    cv2.ellipse(img, (cx, cy - int(55 * s)), (int(62 * s), int(35 * s)), 0, 180, 360,
                (40, 30, 30), -1)
    for dx in (-25, 25):
        ex, ey = cx + int(dx * s), cy - int(12 * s)
        cv2.ellipse(img, (ex, ey - int(14 * s)), (int(15 * s), int(4 * s)), 0, 0, 360,
                    (50, 40, 40), -1)
        cv2.ellipse(img, (ex, ey), (int(12 * s), int(6 * s)), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, (ex, ey), int(5 * s), (30, 30, 30), -1)
    cv2.line(img, (cx, cy - int(5 * s)), (cx - int(5 * s), cy + int(20 * s)), (170, 140, 120), 4)
    cv2.ellipse(img, (cx, cy + int(42 * s)), (int(22 * s), int(7 * s)), 0, 0, 360,
                (150, 60, 60), -1)
    img = cv2.GaussianBlur(img, (0, 0), 3)
    img[:, 400:] = 0
    img[::8, 400:] = 255  # stripes far from the face
    return Image.fromarray(img)


def test_default_detector_is_centerface() -> None:
    """`make install` put the pinned model in the cache, so the default is CenterFace."""
    assert FaceBlurrer().detector == "centerface"


def test_detectors_really_fire_on_their_fixtures() -> None:
    """The fixtures are meaningful: CenterFace finds the astronaut's face where it is (upper
    middle of the photo), Haar finds the drawn face on the left half."""
    (box,) = FaceBlurrer().detect(real_face_photo())
    assert 150 <= box.left <= 200 and 260 <= box.right <= 300
    assert box.top < 80 and box.bottom > 180
    (drawn,) = FaceBlurrer(HaarDetector()).detect(drawn_face_scene())
    assert drawn.right <= 400


@pytest.mark.parametrize("haar", [False, True], ids=["centerface", "haar"])
def test_face_region_changes_rest_does_not(haar: bool) -> None:
    """Inside the face box the pixels change a lot; outside, not one pixel changes; the
    blurred face is no longer detected."""
    scene = drawn_face_scene() if haar else real_face_photo()
    blurrer = FaceBlurrer(HaarDetector()) if haar else FaceBlurrer()
    (box,) = blurrer.detect(scene)
    out, count = blurrer.blur(scene)
    assert count == 1
    before, after = np.asarray(scene).astype(int), np.asarray(out).astype(int)
    inside = (slice(box.top, box.bottom), slice(box.left, box.right))
    assert np.abs(before[inside] - after[inside]).mean() > 5
    mask = np.ones(before.shape[:2], bool)
    mask[inside] = False
    assert np.array_equal(before[mask], after[mask])
    assert blurrer.detect(out) == []


def test_no_face_no_change() -> None:
    """An image without a face comes back unchanged with count 0."""
    plain = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (64, 1)))
    out, count = FaceBlurrer().blur(plain.convert("RGB"))
    assert count == 0 and np.array_equal(np.asarray(out), np.asarray(plain.convert("RGB")))


def test_sanitize_blur_faces_flag(tmp_path: Path) -> None:
    """`blur_faces` in the pipeline reports the count and writes a face-free image."""
    sub = tmp_path / "src" / "3_people"
    sub.mkdir(parents=True)
    real_face_photo().save(sub / "portrait.jpg", quality=95)
    report = sanitize_tree(tmp_path / "src", tmp_path / "dst",
                           pseudonymizer=Pseudonymizer(b"f" * 32),
                           options=SanitizeOptions(blur_faces=True))
    assert report.faces_blurred == 1
    with Image.open(tmp_path / "dst" / report.files[0].rel_path) as im:
        assert FaceBlurrer().detect(im.convert("RGB")) == []


def test_model_with_another_hash_is_refused(tmp_path: Path) -> None:
    """A model file that is not byte for byte the pinned one is refused (exit 2), never
    loaded and never silently replaced by Haar."""
    real = centerface_bytes()
    assert real is not None
    tampered = bytearray(real)
    tampered[len(tampered) // 2] ^= 1  # one bit
    (tmp_path / CENTERFACE_FILE).write_bytes(bytes(tampered))
    env = {"ST_FACE_MODEL_DIR": str(tmp_path)}
    with pytest.raises(FaceModelRefused) as err:
        centerface_bytes(env)
    assert err.value.exit_code == 2 and str(tmp_path) not in str(err.value)
    (tmp_path / CENTERFACE_FILE).unlink()
    (tmp_path / CENTERFACE_FILE).symlink_to(tmp_path / "elsewhere.onnx")
    with pytest.raises(FaceModelRefused):
        centerface_bytes(env)  # a link is not followed


def test_model_found_by_env_and_absent_means_haar(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """ST_FACE_MODEL_DIR is searched first; with no model anywhere the fallback is Haar."""
    real = centerface_bytes()
    assert real is not None
    (tmp_path / CENTERFACE_FILE).write_bytes(real)
    assert centerface_bytes({"ST_FACE_MODEL_DIR": str(tmp_path)}) == real
    monkeypatch.setattr("sys.prefix", str(tmp_path / "no-venv"))
    monkeypatch.setenv("ST_FACE_MODEL_DIR", str(tmp_path / "empty"))
    assert default_detector().name == "haar"


def test_face_scan_counts_without_blurring() -> None:
    """find_faces counts the face and leaves every pixel as the plain decode writes it."""
    import io

    from secure_trainer.privacy.image_decode import DecodeRequest, decode_image

    buf = io.BytesIO()
    real_face_photo().save(buf, "PNG")
    raw = buf.getvalue()
    plain = decode_image(raw, DecodeRequest())
    scanned = decode_image(raw, DecodeRequest(find_faces=True))
    blurred = decode_image(raw, DecodeRequest(blur_faces=True, find_faces=True))
    assert (plain.faces_found, scanned.faces_found) == (0, 1)
    assert scanned.data == plain.data and scanned.faces == 0
    assert (blurred.faces, blurred.faces_found) == (1, 0) and blurred.data != plain.data
    request = DecodeRequest(find_faces=True)
    assert DecodeRequest.from_json(request.to_json()) == request
