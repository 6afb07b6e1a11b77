"""The training child: isolated interpreter (`-I`), no inheritable/ambient capabilities, no
core dumps; the supervisor is not dumpable. Read back from the real processes' /proc files.
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from entrypoint.run.nodump import forbid_core_dumps, is_dumpable
from entrypoint.run.privileges import PreparedDrop, trainer_ids
from entrypoint.run.trainer_child import run_trainer
from tests.integration.run_support import RunProcess, children_of, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root]

_PY = "/usr/bin/python3"  # reachable by the training uid (the venv under /root is not)
_PROBE = ("import resource, sys; print(open('/proc/self/status').read());"
          "print('CORE', *resource.getrlimit(resource.RLIMIT_CORE))")
_CAP_NET_RAW = 13


def _status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}


class _Cap(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class _Hdr(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


def test_drop_clears_an_inheritable_set_and_core_limit() -> None:
    """The parent side raises CAP_NET_RAW into the child's inheritable set before the drop (a
    uid change keeps it); after the drop CapInh, CapAmb and the core limit are zero."""
    libc = ctypes.CDLL(None, use_errno=True)
    hdr, data = _Hdr(0x20080522, 0), (_Cap * 2)()
    assert libc.capget(ctypes.byref(hdr), data) == 0
    data[0].inheritable = 1 << _CAP_NET_RAW
    drop = PreparedDrop(*trainer_ids())

    def preexec() -> None:
        if libc.capset(ctypes.byref(hdr), data) != 0:
            raise OSError(ctypes.get_errno(), "capset")
        drop.apply()

    def run(pre: Any) -> dict[str, str]:
        out = subprocess.run([_PY, "-c", _PROBE], preexec_fn=pre, capture_output=True,
                             text=True, timeout=60, check=True, env={})
        return _status(out.stdout) | {"CORE": out.stdout.split("CORE", 1)[1].strip()}

    def only_inheritable() -> None:
        if libc.capset(ctypes.byref(hdr), data) != 0:
            raise OSError(ctypes.get_errno(), "capset")

    control = run(only_inheritable)  # the raise works: without the drop CapInh is set
    assert int(control["CapInh"], 16) == 1 << _CAP_NET_RAW
    st = run(preexec)
    assert st["Uid"].split()[0] == str(trainer_ids()[0])
    for field in ("CapInh", "CapAmb", "CapPrm", "CapEff", "CapBnd"):
        assert int(st[field], 16) == 0, field
    assert st["CORE"] == "0 0" and st["NoNewPrivs"] == "1"


def test_supervisor_forbids_core_dumps() -> None:
    """forbid_core_dumps in a forked stand-in for `run`: RLIMIT_CORE 0/0, not dumpable."""
    pid = os.fork()
    if pid == 0:
        try:
            forbid_core_dumps()
            ok = resource.getrlimit(resource.RLIMIT_CORE) == (0, 0) and not is_dumpable()
            os._exit(0 if ok else 1)
        except OSError:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_child_never_imports_from_the_workspace(tmp_path: Path) -> None:
    """A package planted in the workspace (the child's cwd) under our own name is not
    imported: `python -I` keeps the cwd off sys.path."""
    planted = tmp_path / "entrypoint"
    planted.mkdir()
    (planted / "__init__.py").write_text("print('PLANTED-CODE-RAN')\n")
    (planted / "cli.py").write_text("print('PLANTED-CODE-RAN')\n")
    lines: list[str] = []
    code = run_trainer(["--help"], cwd=tmp_path, tmp=tmp_path, ids=None, extra_env={},
                       redact=[], echo=lines.append)
    assert code == 0 and lines, lines
    assert not any("PLANTED-CODE-RAN" in line for line in lines)


@pytest.mark.slow
def test_real_run_child_has_no_core_and_is_isolated(dev_vault: Any, tmp_path: Path,
                                                    tiny_model: Any, tiny_dataset: Path) -> None:
    """During [train] of a real `run`: the supervisor's and the child's core limit are 0/0,
    the child runs `-I` with empty inheritable and ambient sets."""
    case = prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)
    run = RunProcess(case, steps=40)
    try:
        assert run.wait_for("[train]", timeout=300), "\n".join(run.lines[-30:])
        found: dict[str, str] = {}
        for _ in range(2000):
            # `train` as a word of its own: a fork that has not exec'd yet still shows the
            # supervisor's argv (`run ... --max_train_steps`).
            kids = [k for k in children_of(run.proc.pid)
                    if b"train" in Path(f"/proc/{k}/cmdline").read_bytes().split(b"\0")]
            if kids:
                child = kids[0]
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                found = _status(Path(f"/proc/{child}/status").read_text())
                limits = Path(f"/proc/{child}/limits").read_text()
                sup_limits = Path(f"/proc/{run.proc.pid}/limits").read_text()
                break
            time.sleep(0.01)
        assert found, "no training child found"
        assert argv[1] == b"-I" and b"-m" in argv
        assert int(found["CapInh"], 16) == 0 and int(found["CapAmb"], 16) == 0
        for text in (limits, sup_limits):
            core = next(ln for ln in text.splitlines() if ln.startswith("Max core file size"))
            assert core.split()[4:6] == ["0", "0"], core
    finally:
        code, out = run.finish(timeout=600)
    assert code == 0, out[-2000:]
