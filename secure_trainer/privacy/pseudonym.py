"""Pseudonymous names for imported files and folders: keyed HMAC of the original relative name.

The same key and the same source name always give the same pseudonym, so a re-import is
idempotent; without the key a pseudonym reveals nothing about the name. Kohya's `<N>_` repeat
prefix of a folder is kept (training needs it), the rest of the folder name is replaced.
Must never log a name or the key, and never store the key outside the given workspace.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path, PurePosixPath

from secure_trainer.errors import ConfigError

__all__ = ["KEY_BYTES", "KEY_RELPATH", "Pseudonymizer", "load_or_create_key"]

# coupling: docs/data-and-registry.md names this file; it lives in the encrypted workspace.
KEY_RELPATH = PurePosixPath(".secure-trainer/pseudonym.key")
KEY_BYTES = 32
_REPEATS_RE = re.compile(r"^(\d+)_(.*)$", re.DOTALL)
_FILE_CHARS = 20  # 80 bits: collisions are negligible at any dataset size we will see
_DIR_CHARS = 12


def load_or_create_key(workspace: Path) -> bytearray:
    """The pseudonym key stored in `workspace`, created (0600, 32 random bytes) on first use.

    Raises ConfigError when the key file exists but is not a regular file of the right size.
    """
    key_path = workspace / KEY_RELPATH
    key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # SECURITY: O_EXCL so two concurrent imports cannot both create (and differ on) the key;
        # O_NOFOLLOW so a planted symlink cannot redirect the key out of the workspace.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(KEY_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
    try:
        fd = os.open(key_path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        raise ConfigError("the workspace pseudonym key could not be read") from None
    with os.fdopen(fd, "rb") as fh:
        key = bytearray(fh.read(KEY_BYTES + 1))
    if len(key) != KEY_BYTES:
        raise ConfigError(f"the workspace pseudonym key must be {KEY_BYTES} bytes")
    return key


class Pseudonymizer:
    """Maps original relative paths to pseudonymous ones under a secret key."""

    def __init__(self, key: bytes | bytearray, *, keep_folder_names: bool = False) -> None:
        if len(key) < 16:
            raise ConfigError("the pseudonym key must be at least 16 bytes")
        self._key = bytes(key)
        self._keep_folders = keep_folder_names

    def __repr__(self) -> str:
        return "Pseudonymizer(key=***)"

    def _mac(self, domain: str, text: str, chars: int) -> str:
        digest = hmac.new(self._key, f"{domain}\x00{text}".encode(), hashlib.sha256).hexdigest()
        return digest[:chars]

    def folder(self, rel_dir: PurePosixPath) -> PurePosixPath:
        """Pseudonymous form of a source folder path, component by component.

        `10_jane doe/closeups` → `10_<hmac>/<hmac>`; a bare number (`10`) is kept. Each
        component's HMAC covers its whole original path so equal names in different parents
        do not collide into one folder.
        """
        if self._keep_folders:
            return rel_dir
        parts: list[str] = []
        for i, name in enumerate(rel_dir.parts):
            full = "/".join(rel_dir.parts[: i + 1])
            m = _REPEATS_RE.match(name)
            if name.isdigit():
                parts.append(name)
            elif m:
                parts.append(f"{m.group(1)}_p{self._mac('dir', full, _DIR_CHARS)}")
            else:
                parts.append(f"p{self._mac('dir', full, _DIR_CHARS)}")
        return PurePosixPath(*parts) if parts else PurePosixPath(".")

    def file_stem(self, rel_file: PurePosixPath) -> str:
        """Pseudonymous stem of a source image (its caption files share it)."""
        return self._mac("file", rel_file.as_posix(), _FILE_CHARS)

    def subject(self, patient_id: str) -> str:
        """Pseudonymous data-subject id of a DICOM PatientID (keyed, stable per workspace key),
        so erasure by subject finds every image of one patient."""
        return f"dicom-{self._mac('subject', patient_id, _FILE_CHARS)}"

    def path(self, rel_file: PurePosixPath, suffix: str) -> PurePosixPath:
        """Destination relative path of a source image written with `suffix` (e.g. `.png`)."""
        return self.folder(rel_file.parent) / f"{self.file_stem(rel_file)}{suffix}"
