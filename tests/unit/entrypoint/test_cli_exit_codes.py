"""The CLI maps usage errors to exit 2 with one line, and a bare group shows help with exit 0."""

from __future__ import annotations

import subprocess
import sys


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "entrypoint.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_unknown_option_is_usage_error() -> None:
    proc = _cli("keys", "rotate", "--bogus")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error[usage]: No such option: --bogus"]


def test_bare_group_and_version() -> None:
    assert _cli("keys").returncode == 0
    version = _cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("secure-trainer ")


def test_unexpected_error_prints_one_line_without_its_text(tmp_path: object) -> None:
    """A bug (a foreign exception) exits 1 with its type only: its text may name a data path."""
    secret_dir = "/srv/private/patient-0042"
    code = (
        "import sys, entrypoint.cli as cli\n"
        "def boom(*a, **k):\n"
        f"    raise PermissionError(13, 'Permission denied', '{secret_dir}')\n"
        "cli.build_app = lambda: boom\n"
        "cli.main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error[internal]: unexpected PermissionError (a bug; rerun with --debug for a traceback)"]
    assert secret_dir not in proc.stdout + proc.stderr
