"""Decide whether one pinned package version is affected by an OSV `affected` entry.

PyPI versions compare by PEP 440 (`packaging.version`), for ECOSYSTEM and SEMVER ranges alike;
Debian versions by dpkg's ordering (supply.debversion). Must never: compare versions as
strings, or call a package unaffected because an advisory's bound could not be parsed (such a
range is reported as undecidable and counts as affected).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from supply.debversion import DebianVersion
from supply.osv_db import Affected, base_ecosystem

Parser = Callable[[str], Any]


def _pep440_release(text: str) -> Version:
    """A PEP 440 version without its local label: 2.13.0+cpu is the 2.13.0 release, so the
    advisories of 2.13.0 apply to it (packaging would order it above 2.13.0 and miss them)."""
    return Version(Version(text).public)


# ECOSYSTEM ranges in every family we match; SEMVER only where PEP 440 can read it (PyPI).
_PARSERS: dict[str, tuple[Parser, frozenset[str]]] = {
    "PyPI": (_pep440_release, frozenset({"ECOSYSTEM", "SEMVER"})),
    "Debian": (DebianVersion, frozenset({"ECOSYSTEM"})),
}
# The order of event kinds at one version: a range opening and closing at the same version is
# empty, so "introduced" is applied before the closing kinds.
_KIND_ORDER = {"introduced": 0, "fixed": 1, "last_affected": 1, "limit": 1}


@dataclass(frozen=True)
class Verdict:
    """Whether a version is affected, and the first fixed version above it, if any."""

    affected: bool
    fixed: str | None = None
    """The lowest `fixed` bound above the version in the range that matched; None: no fix."""
    undecidable: bool = False
    """True when a bound could not be parsed: the entry is counted affected, to be triaged."""


def supported(ecosystem: str) -> bool:
    """True when versions of this ecosystem family can be compared here."""
    return base_ecosystem(ecosystem) in _PARSERS


def ecosystem_applies(advisory_ecosystem: str, ours: str) -> bool:
    """'Debian:12' applies to a Debian 12 system; a bare 'Debian' applies to every release."""
    if base_ecosystem(advisory_ecosystem) != base_ecosystem(ours):
        return False
    return ":" not in advisory_ecosystem or advisory_ecosystem == ours


def _events(raw: Iterable[Mapping[str, Any]], parse: Parser) -> list[tuple[str, str, Any]]:
    """(kind, text, parsed) for each event, sorted by version; '0' is below every version."""
    out: list[tuple[str, str, Any]] = []
    for event in raw:
        for kind in _KIND_ORDER:
            if kind in event:
                text = str(event[kind])
                if kind == "limit" and text == "*":
                    continue  # OSV's "no upper limit"
                out.append((kind, text, None if text == "0" else parse(text)))
    lowest: list[tuple[str, str, Any]] = [e for e in out if e[2] is None]
    rest = sorted((e for e in out if e[2] is not None), key=_SortKey.of)
    return lowest + rest


class _SortKey:
    """Sort key over parsed versions (any totally ordered type) then event kind."""

    __slots__ = ("kind", "version")

    def __init__(self, version: Any, kind: int) -> None:
        self.version = version
        self.kind = kind

    @classmethod
    def of(cls, event: tuple[str, str, Any]) -> _SortKey:
        return cls(event[2], _KIND_ORDER[event[0]])

    def __lt__(self, other: _SortKey) -> bool:
        if self.version == other.version:
            return self.kind < other.kind
        return bool(self.version < other.version)


def _in_range(version: Any, events: list[tuple[str, str, Any]]) -> tuple[bool, str | None]:
    """Walk the sorted events up to `version` (OSV's evaluation); also find the next fix."""
    affected = False
    for kind, _text, bound in events:
        if bound is not None and version < bound:
            break  # sorted: no later event applies to this version
        if kind == "introduced":
            affected = True
        elif kind in ("fixed", "limit") or bound is not None and bound < version:
            affected = False  # last_affected closes only above its bound
    if not affected:
        return False, None
    fixes = [text for kind, text, bound in events
             if kind == "fixed" and bound is not None and version < bound]
    return True, (fixes[0] if fixes else None)


def evaluate(ecosystem: str, version_text: str, entry: Affected) -> Verdict:
    """The verdict of one affected entry for `version_text` of a package in `ecosystem`."""
    parse, kinds = _PARSERS[base_ecosystem(ecosystem)]
    version = parse(version_text)  # our own pin: a ValueError here is the caller's input error
    for listed in entry.versions:
        try:
            if parse(listed) == version:
                return Verdict(affected=True, fixed=_first_fix(entry, version, parse, kinds))
        except (InvalidVersion, ValueError):
            continue  # a junk entry in the explicit list cannot equal a valid pin
    for rng in entry.ranges:
        if rng.get("type") not in kinds:
            continue  # GIT ranges name commits, not releases
        try:
            events = _events(rng.get("events") or (), parse)
        except (InvalidVersion, ValueError):
            return Verdict(affected=True, undecidable=True)
        hit, fixed = _in_range(version, events)
        if hit:
            return Verdict(affected=True, fixed=fixed)
    return Verdict(affected=False)


def _first_fix(entry: Affected, version: Any, parse: Parser,
               kinds: frozenset[str]) -> str | None:
    """The lowest fixed bound above `version` over all ranges (for explicit-list matches)."""
    best: tuple[Any, str] | None = None
    for rng in entry.ranges:
        if rng.get("type") not in kinds:
            continue  # a GIT range's fixed is a commit, which may even parse as a version
        for event in rng.get("events") or ():
            if "fixed" not in event:
                continue
            try:
                bound = parse(str(event["fixed"]))
            except (InvalidVersion, ValueError):
                continue  # unreadable bound: the explicit list already decided "affected"
            if version < bound and (best is None or bound < best[0]):
                best = (bound, str(event["fixed"]))
    return best[1] if best else None
