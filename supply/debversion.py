"""Debian version ordering (epoch:upstream-revision) as Debian policy 5.6.12 defines it.

Must never: fall back to string comparison, or accept a version dpkg would refuse silently
(an empty upstream part or a non-numeric epoch raises ValueError).
"""

from __future__ import annotations

import functools
import re

# Upstream versions start with a digit in policy, but dpkg itself only warns; accept any
# allowed character so real status files never break the scan.
_UPSTREAM = re.compile(r"^[A-Za-z0-9.+~:-]+$")
_REVISION = re.compile(r"^[A-Za-z0-9.+~]+$")


@functools.total_ordering
class DebianVersion:
    """A parsed Debian version; compares as dpkg --compare-versions does."""

    __slots__ = ("epoch", "revision", "upstream")

    def __init__(self, text: str) -> None:
        text = text.strip()
        epoch_text, sep, rest = text.partition(":")
        if not sep:
            epoch_text, rest = "0", text
        if not epoch_text.isdigit():
            raise ValueError("Debian version: the epoch must be a number")
        upstream, sep, revision = rest.rpartition("-")
        if not sep:  # no hyphen: everything is upstream, revision is empty (native package)
            upstream, revision = rest, ""
        if not upstream or not _UPSTREAM.match(upstream):
            raise ValueError("Debian version: bad upstream part")
        if sep and not _REVISION.match(revision):
            raise ValueError("Debian version: bad revision part")
        self.epoch: int = int(epoch_text)
        self.upstream: str = upstream
        self.revision: str = revision

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DebianVersion):
            return NotImplemented
        return compare(self, other) == 0

    def __lt__(self, other: DebianVersion) -> bool:
        return compare(self, other) < 0

    def __hash__(self) -> int:
        # Equal versions may be spelled differently ("1.0" == "0:1.0", "1.0-0" vs "1.0-"),
        # so hash only what equality cannot vary: nothing finer than the epoch.
        return hash(self.epoch)

    def __str__(self) -> str:
        text = f"{self.epoch}:{self.upstream}" if self.epoch else self.upstream
        return f"{text}-{self.revision}" if self.revision else text

    def __repr__(self) -> str:
        return f"DebianVersion({str(self)!r})"


def _order(char: str) -> int:
    """Weight of one non-digit character: ~ before end of part, letters before the rest."""
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternate non-digit runs (by _order) and digit runs (numerically)."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        # Non-digit run; the end of a string weighs 0, so "~" (-1) sorts before it.
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i += 1
            j += 1
        # Digit run, compared as a number (leading zeros do not count).
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return -1 if first_diff < 0 else 1
    return 0


def compare(a: DebianVersion, b: DebianVersion) -> int:
    """-1, 0 or 1 as a is older than, the same as, or newer than b."""
    if a.epoch != b.epoch:
        return -1 if a.epoch < b.epoch else 1
    return _compare_part(a.upstream, b.upstream) or _compare_part(a.revision, b.revision)
