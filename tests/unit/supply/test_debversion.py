"""Debian version ordering: known orderings from policy, cross-checked with the real dpkg."""

from __future__ import annotations

import itertools
import shutil
import subprocess  # nosec B404 - fixed argv

import pytest

from supply.debversion import DebianVersion

# (older, newer) pairs; each is an ordering Debian policy or dpkg's own tests state.
ORDERED = [
    ("1.0~rc1", "1.0"),          # ~ sorts before the end of the string
    ("1.0~~", "1.0~"),
    ("1.0~rc1", "1.0~rc2"),
    ("2.0", "1:0.9"),            # the epoch wins over everything
    ("1.0", "1.0-1"),            # no revision is older than any revision
    ("1.0-1", "1.0-2"),
    ("1.0-9", "1.0-10"),         # digits compare as numbers
    ("1.2", "1.10"),
    ("1.0a", "1.0+"),            # letters sort before non-letters
    ("1.0", "1.0a"),
    ("1.0", "1.0.1"),
    ("3.0.11-1~deb12u1", "3.0.11-1~deb12u2"),
    ("3.0.11-1~deb12u2", "3.0.11-1"),
    ("2.36-9+deb12u3", "2.36-9+deb12u10"),
    ("1:2.38.1-5", "1:2.38.1-5+deb12u1"),
]
EQUAL = [("1.0", "0:1.0"), ("1.01", "1.1"), ("1.0-0", "1.0-00")]


@pytest.mark.parametrize(("older", "newer"), ORDERED)
def test_known_orderings(older: str, newer: str) -> None:
    assert DebianVersion(older) < DebianVersion(newer)
    assert DebianVersion(newer) > DebianVersion(older)
    assert DebianVersion(older) != DebianVersion(newer)


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_equal_spellings(a: str, b: str) -> None:
    assert DebianVersion(a) == DebianVersion(b)
    assert hash(DebianVersion(a)) == hash(DebianVersion(b))


def test_parts() -> None:
    v = DebianVersion("1:2.3-4-5")  # the revision is after the LAST hyphen
    assert (v.epoch, v.upstream, v.revision) == (1, "2.3-4", "5")
    assert str(v) == "1:2.3-4-5"


@pytest.mark.parametrize("bad", ["", "a:1.0", "1:", "1.0-", "1.0 2", "1.0-r_1"])
def test_malformed_versions_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        DebianVersion(bad)


def test_agrees_with_dpkg() -> None:
    """Every pair of the versions above compares as `dpkg --compare-versions` says."""
    dpkg = shutil.which("dpkg")
    assert dpkg, "dpkg is part of every Debian host this project supports"
    versions = sorted({v for pair in ORDERED + EQUAL for v in pair})
    for a, b in itertools.combinations(versions, 2):
        ours = "lt" if DebianVersion(a) < DebianVersion(b) else (
            "eq" if DebianVersion(a) == DebianVersion(b) else "gt")
        rc = subprocess.run([dpkg, "--compare-versions", a, ours, b], check=False).returncode
        assert rc == 0, f"dpkg disagrees: {a} {ours} {b}"
