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
