"""proc.run: stdin pipe, minimal env, typed one-line redacted errors, timeouts."""

from __future__ import annotations

import os
import sys

import pytest

from entrypoint import proc
from entrypoint.errors import AuditError, WorkspaceError


def test_stdin_reaches_child_and_env_is_minimal() -> None:
    os.environ["ST_TEST_LEAK"] = "must-not-reach-child"
    try:
        buf = bytearray(b"secret-on-stdin\n")
        code = "import os,sys; print(sys.stdin.read().strip(), 'ST_TEST_LEAK' in os.environ)"
        out = proc.run([sys.executable, "-c", code], stdin=buf, timeout=30,
                       error=WorkspaceError, what="probe")
    finally:
        del os.environ["ST_TEST_LEAK"]
    assert out.stdout.decode().split() == ["secret-on-stdin", "False"]
    assert buf == bytearray(b"secret-on-stdin\n")  # not consumed: the caller wipes it


def test_failure_is_typed_one_line_and_redacted() -> None:
    code = ("import sys; sys.stderr.write('SwitchToSyslog: noise\\ncannot open /srv/data/x.png\\n"
            "token hvs.ABCDEFGHIJKLMNOPQRSTUVWXYZ\\n'); sys.exit(3)")
    with pytest.raises(AuditError) as err:
        proc.run([sys.executable, "-c", code], timeout=30, error=AuditError, what="auditctl -l")
    msg = err.value.message
    assert err.value.exit_code == 6 and "\n" not in msg
    assert msg.startswith("auditctl -l failed (exit 3): cannot open <path>")
    assert "/srv" not in msg and "hvs." not in msg and "SwitchToSyslog" not in msg


def test_check_false_returns_the_exit_code() -> None:
    out = proc.run([sys.executable, "-c", "raise SystemExit(12)"], timeout=30,
                   error=WorkspaceError, what="x", check=False)
    assert out.returncode == 12


def test_missing_binary_and_timeout() -> None:
    with pytest.raises(WorkspaceError, match="not installed"):
        proc.run(["/nonexistent/bin/tool"], timeout=5, error=WorkspaceError, what="tool")
    with pytest.raises(WorkspaceError, match="timed out"):
        proc.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5,
                 error=WorkspaceError, what="sleeper")
