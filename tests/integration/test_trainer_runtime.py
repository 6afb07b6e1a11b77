"""The trainer's interpreter (ST_TRAINER_PYTHON): the real launcher runs it as the training uid,
isolated, and refuses one that anyone but root could change or that uid cannot reach.

A real venv (`python -m venv` from a root-owned system interpreter) under a root-owned 0755 dir;
its site-packages holds a stand-in `entrypoint.cli` that reports what the child sees, so the
test needs no torch. Everything the launcher does (check, fork, drop, exec, redacted echo) is
production code.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.run.runtime import runtime_problem
from entrypoint.run.trainer_child import TrainerLauncher

pytestmark = [pytest.mark.integration, pytest.mark.root]

IDS = (10001, 10001)
_REPORT = """import os, sys
# Paths would be redacted on the way out: report comparisons instead.
in_venv = sys.prefix != sys.base_prefix and os.path.isfile(os.path.join(sys.prefix, "pyvenv.cfg"))
print("uid", os.getuid(), "isolated", sys.flags.isolated, "venv", in_venv,
      "cwd_on_path", os.getcwd() in sys.path)
print("argv", *sys.argv[1:])
"""


def _system_python() -> Path:
    """A root-owned interpreter of this Python version that uid 10001 may run (as the
    runtime script picks it)."""
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for cand in (os.path.realpath(sys._base_executable), f"/usr/bin/{ver}",  # type: ignore[attr-defined]
                 f"/usr/local/bin/{ver}", "/usr/bin/python3"):
        if os.path.isfile(cand) and runtime_problem(Path(cand), IDS[0]) is None:
            return Path(cand)
    raise AssertionError("no root-owned system python3 reachable by uid 10001 (install python3)")


@pytest.fixture
def runtime(root_safe_dir: Path) -> Path:
    """A real venv whose `entrypoint.cli` reports uid, isolation, prefix and argv."""
    venv = root_safe_dir / "rt"
    subprocess.run([str(_system_python()), "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=120)
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "entrypoint").mkdir()
    (site / "entrypoint" / "__init__.py").write_text("")
    (site / "entrypoint" / "cli.py").write_text(_REPORT)
    return venv / "bin" / "python"


def _launch(python: Path, cwd: Path) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = TrainerLauncher(python)(["--seed", "1"], cwd=cwd, tmp=cwd, ids=IDS, extra_env={},
                                   redact=[], echo=lines.append)
    return code, lines


def test_launcher_runs_the_configured_runtime_as_the_training_uid(runtime: Path,
                                                                  root_safe_dir: Path) -> None:
    code, lines = _launch(runtime, root_safe_dir)
    assert code == 0, lines
    assert lines == [f"uid {IDS[0]} isolated 1 venv True cwd_on_path False",
                     "argv train --seed 1"]


def _site(runtime: Path) -> Path:
    return next(runtime.parent.parent.glob("lib/python3*/site-packages"))


@pytest.mark.parametrize("damage", ["file_world_writable", "dir_owned_by_trainer",
                                    "link_into_tmp", "venv_unreachable", "group_writable_bin"])
def test_unsafe_runtime_is_refused_before_the_child_starts(runtime: Path, root_safe_dir: Path,
                                                           damage: str) -> None:
    site = _site(runtime)
    victim = site / "entrypoint" / "cli.py"
    if damage == "file_world_writable":
        victim.chmod(0o666)  # the trainer could rewrite the next run's trainer
    elif damage == "dir_owned_by_trainer":
        os.chown(site / "entrypoint", *IDS)
    elif damage == "link_into_tmp":
        planted = Path(tempfile.mkdtemp(prefix="st-runtime-plant-"))  # below sticky /tmp
        try:
            (site / "extra.pth").symlink_to(planted / "x.pth")
            (planted / "x.pth").write_text("")
            with pytest.raises(ConfigError) as err:
                _launch(runtime, root_safe_dir)
        finally:
            shutil.rmtree(planted)
        assert "another user than root" in err.value.message
        return
    elif damage == "venv_unreachable":
        runtime.parent.parent.chmod(0o700)
    elif damage == "group_writable_bin":
        bin_dir = runtime.parent
        bin_dir.chmod(bin_dir.stat().st_mode | stat.S_IWGRP)
    with pytest.raises(ConfigError) as err:
        _launch(runtime, root_safe_dir)
    assert err.value.exit_code == 2
    assert "ST_TRAINER_PYTHON" in err.value.message and str(root_safe_dir) not in err.value.message


def test_interpreter_behind_a_writable_directory_is_refused(runtime: Path,
                                                            root_safe_dir: Path) -> None:
    """A link to the interpreter is followed hop by hop: a hop through a directory others may
    write (here a sticky /tmp dir) is refused even though the final file is root's."""
    hop = Path(tempfile.mkdtemp(prefix="st-runtime-hop-"))
    try:
        (hop / "python").symlink_to(runtime)
        assert runtime_problem(hop / "python", IDS[0]) is not None
        with pytest.raises(ConfigError):
            _launch(hop / "python", root_safe_dir)
    finally:
        shutil.rmtree(hop)

