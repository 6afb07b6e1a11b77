"""Keyed subject tags for tombstones: HMAC-SHA256 of the subject id under a Vault-held key.

A subject id is low-entropy ("S-1042"); a plain hash of it is reversed by enumeration, so a
tombstone keeps only HMAC(key, id). The key is handed in as bytes by the caller (the supervisor
fetches it from Vault); this module never stores, logs or derives it.
Must never return or log the subject id itself.
"""

from __future__ import annotations

import hashlib
import hmac

KeyBytes = bytes | bytearray
_LABEL = b"secure-trainer tombstone subject v1\x00"
_MIN_KEY_BYTES = 16


def subject_tag(subject: str, key: KeyBytes) -> str:
    """HMAC-SHA256(key, label || subject id) as hex: the only form of the id a tombstone keeps.

    Raises ValueError for a key too short to resist enumeration (an empty or toy key).
    """
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError("the tombstone key is too short")
    return hmac.new(bytes(key), _LABEL + subject.encode("utf-8"), hashlib.sha256).hexdigest()


def tag_matches(subject: str, key: KeyBytes, tag: str | None) -> bool:
    """Whether `tag` is this subject's tag under `key` (constant-time compare)."""
    return tag is not None and hmac.compare_digest(subject_tag(subject, key), tag)
