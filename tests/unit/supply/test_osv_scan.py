"""`python -m supply.osv_scan` end to end: the real PyPA advisory snapshot, written OSV
fixtures, a dpkg status file, the allow-list and the exit codes."""

from __future__ import annotations

import json
import os
import subprocess  # nosec B404 - fixed argv
import sys
from pathlib import Path

import pytest

from supply.osv_scan import main
from tests.conftest import REPO_ROOT
from tests.unit.supply.osv_fixtures import advisory, ecosystem_range, write

# Real advisories in the published format: the vendored subset of the 2024 PyPA snapshot
# (tests/data/osv/README.md: every package of the locks, plus pillow and urllib3), or a full
# database named by SCAN_OSV_DIR.
VENDORED = REPO_ROOT / "tests/data/osv/pypa-advisory-database"
PYPA = Path(os.environ.get("SCAN_OSV_DIR") or VENDORED)
VENDORED_NEWEST = "2024-07-11"  # the newest `modified` among the vendored advisories
OLD_PINS = "pillow==9.0.0 \\\n    --hash=sha256:00\nurllib3==1.26.5\n"
OLD_IDS = {"PYSEC-2022-168", "PYSEC-2022-42979", "PYSEC-2023-175", "PYSEC-2023-227",
           "PYSEC-2023-192", "PYSEC-2023-212"}


@pytest.fixture(scope="module")
def pypa() -> Path:
    assert (PYPA / "vulns").is_dir(), f"the PyPA advisory snapshot is missing at {PYPA}"
    return PYPA


def _scan(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().out


def _lock(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lock.txt"
    path.write_text(text)
    return path


def test_old_pins_are_flagged_with_their_pysec_ids(
        pypa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    rc, out = _scan(capsys, "--osv-dir", pypa, "--lock", _lock(tmp_path, OLD_PINS),
                    "--json", report)
    assert rc == 1
    if PYPA == VENDORED:
        assert f"newest modified {VENDORED_NEWEST}" in out  # the database's date
    data = json.loads(report.read_text())
    assert {f["id"] for f in data["findings"]} == OLD_IDS
    fixes = {f["id"]: f["fixed"] for f in data["findings"]}
    assert fixes["PYSEC-2023-212"] == "1.26.18" and fixes["PYSEC-2022-168"] == "9.0.1"
    assert "FINDING PYSEC-2023-212 urllib3 1.26.5: fixed in 1.26.18" in out


def test_current_pins_are_clean(pypa: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _scan(capsys, "--osv-dir", pypa, "--lock",
                    _lock(tmp_path, "pillow==10.4.0\nurllib3==2.2.3\nurllib3==1.26.20\n"))
    assert rc == 0, out
    assert "0 untriaged finding(s)" in out


def test_project_lock_has_no_finding_in_the_snapshot(
        pypa: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _scan(capsys, "--osv-dir", pypa, "--lock", REPO_ROOT / "requirements/lock-cpu.txt")
    assert rc == 0, out


def _allow(tmp_path: Path, *entries: tuple[str, str, str]) -> Path:
    path = tmp_path / "allow.toml"
    path.write_text("".join(f'[[allow]]\nid = "{i}"\npackage = "{p}"\n'
                            f'reason = "not reachable: no HTTP in the trainer"\nexpires = {e}\n\n'
                            for i, p, e in entries))
    return path


def test_allow_list_triages_by_id_or_alias_until_expiry(
        pypa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = _lock(tmp_path, "urllib3==1.26.5\n")
    # One by its PYSEC id, one by its CVE alias; the package name in any PEP 503 spelling.
    allow = _allow(tmp_path, ("PYSEC-2023-192", "urllib3", "2030-01-01"),
                   ("CVE-2023-45803", "URLLib3", "2030-01-01"))
    rc, out = _scan(capsys, "--osv-dir", pypa, "--lock", lock, "--allow", allow,
                    "--today", "2029-12-31")
    assert rc == 0, out
    assert out.count("TRIAGED") == 2 and "FINDING" not in out
    # The same entries after their expiry: they cover nothing AND fail on their own.
    rc, out = _scan(capsys, "--osv-dir", pypa, "--lock", lock, "--allow", allow,
                    "--today", "2030-01-02")
    assert rc == 1
    assert out.count("FINDING") == 2 and out.count("EXPIRED") == 2


def test_allow_entry_for_another_package_does_not_cover(
        pypa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    allow = _allow(tmp_path, ("PYSEC-2023-192", "requests", "2030-01-01"))
    rc, out = _scan(capsys, "--osv-dir", pypa, "--lock", _lock(tmp_path, "urllib3==1.26.5\n"),
                    "--allow", allow, "--today", "2026-01-01")
    assert rc == 1 and "FINDING PYSEC-2023-192" in out


def test_expired_entry_fails_without_any_finding(
        pypa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    allow = _allow(tmp_path, ("PYSEC-2023-192", "urllib3", "2025-01-01"))
    rc, out = _scan(capsys, "--osv-dir", pypa, "--lock", _lock(tmp_path, "urllib3==2.2.3\n"),
                    "--allow", allow, "--today", "2026-01-01")
    assert rc == 1 and "EXPIRED allow-list entry PYSEC-2023-192" in out


@pytest.mark.parametrize("body", [
    '[[allow]]\nid = "X"\npackage = "p"\nreason = ""\nexpires = 2030-01-01\n',    # no reason
    '[[allow]]\nid = "X"\npackage = "p"\nreason = "r"\nexpires = "2030-01-01"\n',  # a string
    '[[allow]]\nid = "X"\npackage = "p"\nreason = "r"\n',                          # no expiry
    '[[allow]]\nid = "X"\npackage = "p"\nreason = "r"\nexpires = 2030-01-01\nwho = 1\n',
])
def test_malformed_allow_list_is_an_input_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str) -> None:
    write(tmp_path / "db", advisory("TEST-1", "PyPI", "p", [ecosystem_range(("introduced", "0"))]))
    allow = tmp_path / "allow.toml"
    allow.write_text(body)
    assert main(["--osv-dir", str(tmp_path / "db"), "--lock", str(_lock(tmp_path, "p==1\n")),
                 "--allow", str(allow)]) == 2


def test_repository_allow_list_is_valid_and_live(
        pypa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _scan(capsys, "--osv-dir", pypa, "--lock", _lock(tmp_path, "urllib3==2.2.3\n"),
                    "--allow", REPO_ROOT / "supply/osv-allowlist.toml")
    assert rc == 0, out


DPKG_STATUS = """\
Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.11-1~deb12u1
Description: Secure Sockets Layer toolkit
 continuation line

Package: openssl
Status: install ok installed
Version: 3.0.11-1~deb12u1

Package: libc6
Status: install ok installed
Source: glibc (2.36-9+deb12u3)
Version: 2.36-9+deb12u3

Package: oldpkg
Status: deinstall ok config-files
Version: 0.1-1
"""


def test_debian_packages_match_by_source_and_release(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "db"
    write(db, advisory("DSA-1", "Debian:12", "openssl",
                       [ecosystem_range(("introduced", "0"), ("fixed", "3.0.11-1~deb12u2"))],
                       aliases=["CVE-2024-1"]))
    write(db, advisory("DSA-2", "Debian:11", "openssl",  # another release: does not apply
                       [ecosystem_range(("introduced", "0"), ("fixed", "9.9-1"))]))
    write(db, advisory("DEBIAN-CVE-3", "Debian:12", "glibc",  # fixed below ours
                       [ecosystem_range(("introduced", "0"), ("fixed", "2.36-9+deb12u2"))]), "yaml")
    write(db, advisory("DEBIAN-CVE-4", "Debian:12", "oldpkg",  # removed: not installed
                       [ecosystem_range(("introduced", "0"))]))
    status = tmp_path / "status"
    status.write_text(DPKG_STATUS)
    report = tmp_path / "r.json"
    rc, out = _scan(capsys, "--osv-dir", db, "--dpkg-status", status, "--debian-release", "12",
                    "--json", report)
    assert rc == 1
    findings = json.loads(report.read_text())["findings"]
    assert [(f["id"], f["package"], f["fixed"], f["installed_as"]) for f in findings] == [
        ("DSA-1", "openssl", "3.0.11-1~deb12u2", ["libssl3", "openssl"])]
    assert "checked 0 PyPI packages and 2 Debian source packages" in out


def test_aliases_of_one_flaw_are_reported_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "db"
    rng = [ecosystem_range(("introduced", "0"), ("fixed", "2.0"))]
    write(db, advisory("PYSEC-1", "PyPI", "p", rng, aliases=["GHSA-x", "CVE-1"]), "yaml")
    write(db, advisory("GHSA-x", "PyPI", "p", rng, aliases=["CVE-1"]))
    write(db, advisory("GHSA-w", "PyPI", "p", rng, withdrawn="2024-01-01T00:00:00Z"))
    rc, out = _scan(capsys, "--osv-dir", db, "--lock", _lock(tmp_path, "p==1.0\n"))
    assert rc == 1
    assert out.count("FINDING") == 1 and "(1 withdrawn)" in out


def test_input_errors_and_missing_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "db"
    write(db, advisory("TEST-1", "PyPI", "p", [ecosystem_range(("introduced", "0"))]))
    assert main(["--osv-dir", str(db), "--lock", str(_lock(tmp_path, "p>=1\n"))]) == 2
    assert main(["--osv-dir", str(tmp_path / "none"), "--lock",
                 str(_lock(tmp_path, "p==1\n"))]) == 4
    (tmp_path / "empty").mkdir()
    assert main(["--osv-dir", str(tmp_path / "empty"), "--lock",
                 str(_lock(tmp_path, "p==1\n"))]) == 4
    (db / "t" / "BROKEN.json").write_text("{not json")
    assert main(["--osv-dir", str(db), "--lock", str(_lock(tmp_path, "p==1\n"))]) == 2
    assert "BROKEN.json: unreadable" in capsys.readouterr().err


def test_runs_as_a_module_from_the_checkout(tmp_path: Path) -> None:
    """The way scripts/scan.sh calls it: `python -m supply.osv_scan` with the repo as cwd."""
    db = tmp_path / "db"
    write(db, advisory("TEST-1", "PyPI", "p", [ecosystem_range(("introduced", "0"))]))
    proc = subprocess.run([sys.executable, "-m", "supply.osv_scan", "--osv-dir", str(db),
                           "--lock", str(_lock(tmp_path, "p==1\n"))],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "FINDING TEST-1 p 1: no fixed version" in proc.stdout


def test_a_pin_in_the_lock_and_the_image_venv_is_checked_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "db"
    write(db, advisory("TEST-1", "PyPI", "PyYAML", [ecosystem_range(("introduced", "0"))]))
    lock = _lock(tmp_path, "pyyaml==6.0 \\\n    --hash=sha256:00\n")
    freeze = tmp_path / "venv-freeze.txt"
    freeze.write_text("PyYAML==6.0\n")
    rc, out = _scan(capsys, "--osv-dir", db, "--lock", lock, "--lock", freeze)
    assert rc == 1 and out.count("FINDING") == 1 and "checked 1 PyPI packages" in out
