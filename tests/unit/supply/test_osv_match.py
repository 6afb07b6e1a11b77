"""Range semantics of supply.osv_match on advisories written by the test (PEP 440, Debian)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supply.osv_db import load
from supply.osv_match import Verdict, ecosystem_applies, evaluate
from tests.unit.supply.osv_fixtures import advisory, ecosystem_range, write


def _verdict(tmp_path: Path, eco: str, name: str, version: str, ranges: list,
             versions: list[str] | None = None, fmt: str = "json") -> Verdict:
    write(tmp_path, advisory("TEST-1", eco, name, ranges, versions), fmt)
    (_adv, entry), = load(tmp_path).lookup(eco, name)
    return evaluate(eco, version, entry)


# Two branches, events deliberately unsorted as the PyPA database writes them.
TWO_BRANCHES = [ecosystem_range(("introduced", "2.0.0"), ("fixed", "2.0.7"),
                                ("introduced", "0"), ("fixed", "1.26.18"))]


@pytest.mark.parametrize(("version", "affected", "fixed"), [
    ("1.26.17", True, "1.26.18"),
    ("1.26.18", False, None),        # the fixed version itself is not affected
    ("1.26.20", False, None),
    ("2.0.0", True, "2.0.7"),
    ("2.0.6", True, "2.0.7"),
    ("2.0.7", False, None),
    ("2.0.0rc1", False, None),       # PEP 440: a pre-release is below 2.0.0, above 1.26.18
    ("1.0", True, "1.26.18"),
    ("1.26.18.post1", False, None),
])
def test_pep440_ranges(tmp_path: Path, version: str, affected: bool, fixed: str | None) -> None:
    v = _verdict(tmp_path, "PyPI", "urllib3", version, TWO_BRANCHES, fmt="yaml")
    assert (v.affected, v.fixed) == (affected, fixed)


def test_pep440_is_not_string_order(tmp_path: Path) -> None:
    ranges = [ecosystem_range(("introduced", "0"), ("fixed", "1.10"))]
    assert _verdict(tmp_path, "PyPI", "p", "1.9", ranges).affected  # "1.9" > "1.10" as strings


def test_names_normalise_as_pep503(tmp_path: Path) -> None:
    write(tmp_path, advisory("TEST-1", "PyPI", "Foo_Bar.baz", [ecosystem_range(("introduced", "0"))]))
    assert load(tmp_path).lookup("PyPI", "foo-bar-baz")


def test_last_affected_and_limit(tmp_path: Path) -> None:
    last = [ecosystem_range(("introduced", "1.0"), ("last_affected", "1.4"))]
    assert _verdict(tmp_path, "PyPI", "a", "1.4", last) == Verdict(True, None)
    assert not _verdict(tmp_path / "b", "PyPI", "a", "1.4.1", last).affected
    limit = [ecosystem_range(("introduced", "0"), ("limit", "3.0"))]
    assert _verdict(tmp_path / "c", "PyPI", "a", "2.9", limit).affected
    assert not _verdict(tmp_path / "d", "PyPI", "a", "3.0", limit).affected
    unlimited = [ecosystem_range(("introduced", "1.0"), ("limit", "*"))]
    assert _verdict(tmp_path / "e", "PyPI", "a", "99.0", unlimited) == Verdict(True, None)


def test_semver_ranges_use_pep440_and_git_ranges_are_ignored(tmp_path: Path) -> None:
    ranges = [ecosystem_range(("introduced", "0"), ("fixed", "0a1b2c3"), kind="GIT"),
              ecosystem_range(("introduced", "1.0.0"), ("fixed", "1.2.0"), kind="SEMVER")]
    assert _verdict(tmp_path, "PyPI", "s", "1.1.5", ranges) == Verdict(True, "1.2.0")
    assert not _verdict(tmp_path / "b", "PyPI", "s", "0.9", ranges).affected


def test_explicit_versions_list(tmp_path: Path) -> None:
    # No range at all: only the listed versions are affected; 1.0 equals 1.0.0 under PEP 440.
    assert _verdict(tmp_path, "PyPI", "v", "1.0", [], versions=["1.0.0", "1.1"]).affected
    assert not _verdict(tmp_path / "b", "PyPI", "v", "1.2", [], versions=["1.0.0", "1.1"]).affected


def test_local_version_matches_its_release(tmp_path: Path) -> None:
    """torch 2.13.0+cpu is the 2.13.0 release: a flaw of 2.13.0 applies to it."""
    assert _verdict(tmp_path, "PyPI", "torch", "2.13.0+cpu", [], versions=["2.13.0"]).affected
    fixed = [ecosystem_range(("introduced", "0"), ("fixed", "2.13.0"))]
    assert not _verdict(tmp_path / "b", "PyPI", "torch", "2.13.0+cpu", fixed).affected


def test_unparseable_bound_counts_as_affected(tmp_path: Path) -> None:
    ranges = [ecosystem_range(("introduced", "0"), ("fixed", "not a version!"))]
    v = _verdict(tmp_path, "PyPI", "u", "1.0", ranges)
    assert v.affected and v.undecidable


@pytest.mark.parametrize(("version", "affected"), [
    ("3.0.11-1~deb12u1", True),
    ("3.0.11-1~deb12u2", False),     # the fix
    ("3.0.11-1", False),             # ~deb12u2 is below the unstable revision
    ("3.0.9-1", True),
    ("1:0.9-1", False),              # an epoch bump beats any upstream number
])
def test_debian_ranges(tmp_path: Path, version: str, affected: bool) -> None:
    ranges = [ecosystem_range(("introduced", "0"), ("fixed", "3.0.11-1~deb12u2"))]
    assert _verdict(tmp_path, "Debian:12", "openssl", version, ranges).affected is affected


def test_debian_release_narrows() -> None:
    assert ecosystem_applies("Debian:12", "Debian:12")
    assert not ecosystem_applies("Debian:11", "Debian:12")
    assert ecosystem_applies("Debian", "Debian:12")
    assert not ecosystem_applies("PyPI", "Debian:12")
