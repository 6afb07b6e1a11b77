"""One environment: the dev venv, pyproject and the locks agree; deptry finds no undeclared or
unused dependency. These run in `make test`, so CI fails when they drift."""

from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess  # nosec B404 - fixed argv
import sys
import tomllib
from pathlib import Path

import pytest

from supply.lock_drift import drift, installed, main, unlocked
from tests.conftest import REPO_ROOT

LOCKS = {v: REPO_ROOT / f"requirements/lock-{v}.txt" for v in ("cpu", "gpu")}
DEPS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _dev_lock() -> Path:
    """The lock this venv was installed against: +cpu torch -> cpu, else the GPU lock."""
    return LOCKS["cpu" if md.version("torch").endswith("+cpu") else "gpu"]


def test_dev_environment_matches_its_lock() -> None:
    assert drift(_dev_lock(), installed()) == [], "run `make install` (installs with the lock)"


@pytest.mark.parametrize("variant", sorted(LOCKS))
def test_every_pyproject_dependency_is_locked(variant: str) -> None:
    assert unlocked(LOCKS[variant], DEPS) == [], f"regenerate: python scripts/lock.py {variant}"


def test_drift_is_detected(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("PyYAML==0.0.1 \\\n    --hash=sha256:00\nnot-installed-pkg==1.0\n"
                    "wheel==0.1\nsetuptools==1.0\n")
    env = installed()
    assert drift(lock, env) == [f"pyyaml: locked 0.0.1, installed {md.version('pyyaml')}",
                                "not-installed-pkg: locked 1.0, not installed"]


def test_unlocked_dependency_is_detected(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("torch==2.13.0+cpu\nrequests==2.20.0\n")
    assert unlocked(lock, ["torch==2.13.0", "requests>=2.32", "lark>=1",
                           "win-only; sys_platform == 'win32'"]) == [
        "requests: lock has 2.20.0, pyproject wants >=2.32",
        "lark: declared in pyproject, not in the lock"]


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lock", str(_dev_lock()), "--pyproject", str(REPO_ROOT / "pyproject.toml")]) == 0
    stale = tmp_path / "lock.txt"
    stale.write_text("pyyaml==0.0.1\n")
    assert main(["--lock", str(stale), "--pyproject", str(REPO_ROOT / "pyproject.toml")]) == 1
    assert "DRIFT pyyaml" in capsys.readouterr().out
    assert main(["--lock", str(tmp_path / "missing.txt")]) == 2


def test_deptry_finds_no_undeclared_or_unused_dependency() -> None:
    """Imported => declared; declared => imported. The optim extras are loaded via importlib,
    which deptry cannot see."""
    deptry = shutil.which("deptry", path=str(Path(sys.executable).parent))
    assert deptry, "deptry is a dev extra: run `make install`"
    result = subprocess.run(
        [deptry, ".", "--known-first-party", "entrypoint,secure_trainer,supply",
         "--extend-exclude", r"tests|scripts|supply|build|\.venv-scan",
         "--pep621-dev-dependency-groups", "dev",
         "--per-rule-ignores", "DEP002=bitsandbytes|prodigyopt|lion-pytorch",
         "--no-ansi"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
