"""The training child's privilege drop, read back from the child's own /proc/self/status."""

from __future__ import annotations

import subprocess

import pytest

from entrypoint.run.privileges import drop_privileges, preexec_drop, trainer_ids

pytestmark = [pytest.mark.integration, pytest.mark.root]

# The venv lives under /root (0700): the unprivileged child runs the system interpreter.
_PY = "/usr/bin/python3"
_PROBE = "import sys; sys.stdout.write(open('/proc/self/status').read())"


def _status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}


def test_child_runs_unprivileged_without_caps() -> None:
    uid, gid = trainer_ids()
    out = subprocess.run([_PY, "-c", _PROBE], preexec_fn=preexec_drop(uid, gid),
                         capture_output=True, text=True, timeout=60, check=True, env={})
    st = _status(out.stdout)
    assert st["Uid"].split() == [str(uid)] * 4
    assert st["Gid"].split() == [str(gid)] * 4
    assert st["Groups"] == ""
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[field], 16) == 0, field
    assert st["NoNewPrivs"] == "1"


def test_child_cannot_regain_root() -> None:
    uid, gid = trainer_ids()
    probe = "import os\ntry:\n os.setuid(0)\nexcept PermissionError:\n print('denied')"
    out = subprocess.run([_PY, "-c", probe], preexec_fn=preexec_drop(uid, gid),
                         check=False, capture_output=True, text=True, timeout=60, env={})
    assert out.stdout.strip() == "denied"


def test_refuses_root_target() -> None:
    with pytest.raises(ValueError):
        drop_privileges(0, 0)
    assert trainer_ids() >= (1, 1)
