"""Recognise a DICOM Part 10 file from its first bytes (a 128-byte preamble, then `DICM`).

SECURITY: looks at bytes only; never parses beyond the magic, never opens a file.
"""

from __future__ import annotations

__all__ = ["DICOM_SUFFIXES", "MAGIC_OFFSET", "is_dicom"]

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
MAGIC_OFFSET = 128
_MAGIC = b"DICM"


def is_dicom(head: bytes) -> bool:
    """True when `head` (at least the first 132 bytes of a file) carries the Part 10 magic."""
    return head[MAGIC_OFFSET:MAGIC_OFFSET + len(_MAGIC)] == _MAGIC
