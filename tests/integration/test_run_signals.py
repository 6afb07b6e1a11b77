"""SIGTERM in every phase of `run`, SIGKILL at [workspace]/[train] and the next run's recovery.

Guarantees checked wherever the signal lands: exit 143 (SIGTERM), nothing mounted, run marker
cleared, nothing of the run left in the workspace's tmp/ or the state dir's scratch dirs, every
token the run obtained revoked (the raw audit log of a test-only OpenBao tells us which), and
no kernel audit rule of ours left (the runs use ST_AUDIT_MODE=kernel).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.audit.run_rules import LOADED_RULES_FILE
from entrypoint.run.marker import read_run_marker
from tests.integration.run_support import (
    PHASES,
    RawVault,
    RunCase,
    RunProcess,
    app_events,
    children_of,
    gone,
    live_role_tokens,
    our_kernel_rules,
    prepare,
    raw_login_tokens,
    raw_vault_server,
    token_works,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]

_KERNEL = {"ST_AUDIT_MODE": "kernel"}


@pytest.fixture(scope="module")
def raw_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawVault]:
    """A dev OpenBao with a raw file audit device, for this module's runs."""
    yield from raw_vault_server(tmp_path_factory)


def _assert_clean(case: RunCase, raw: RawVault, *, alive_tokens: int = 0) -> None:
    """Everything a run must leave behind it, checked from outside."""
    assert not case.fs.is_mounted(case.mnt)
    assert not case.mnt.exists() or not any(case.mnt.iterdir())
    assert not (case.state / "run.marker").exists()
    assert not (case.state / LOADED_RULES_FILE).exists()
    assert our_kernel_rules(case.tmp_path) == []
    for scratch in ("tmp", "cache"):
        assert not (case.state / scratch).exists() or not any((case.state / scratch).iterdir())
    tokens = raw_login_tokens(raw.log, case.role)
    assert tokens, "the raw audit log shows no login of this role"
    assert sum(token_works(raw.vault, t) for t in tokens) == alive_tokens
    assert live_role_tokens(raw.vault, case.role) == alive_tokens
    with case.opened() as ws:
        assert not any(ws.tmp_dir.iterdir()), "files of a run left in the workspace tmp/"


def _in_proc_mounts(mountpoint: Path) -> bool:
    """True while /proc/mounts (the kernel's own table) lists `mountpoint`."""
    target = str(mountpoint.resolve())
    with open("/proc/mounts", encoding="utf-8") as fh:
        return any(line.split()[1] == target for line in fh if len(line.split()) > 1)


def _trainer_pid(run: RunProcess) -> int | None:
    # The tied gocryptfs is a child of `run` too; the trainer is the other one.
    kids = [k for k in children_of(run.proc.pid) if not _is_gocryptfs(k)]
    return kids[0] if kids else None


def _is_gocryptfs(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "gocryptfs"
    except OSError:
        return False


@pytest.mark.parametrize("phase", PHASES)
def test_sigterm_in_phase_tears_down(raw_vault: RawVault, tmp_path: Path, tiny_model: Any,
                                     tiny_dataset: Path, phase: str) -> None:
    case = prepare(raw_vault.vault, tmp_path, tiny_model, tiny_dataset)
    run = RunProcess(case, steps=5000 if phase == "train" else 3, extra_env=_KERNEL)
    assert run.wait_for(f"[{phase}]"), "\n".join(run.lines)
    trainer: int | None = None
    if phase == "train":
        # Land the signal while the trainer child runs, so its stop is part of what is tested.
        assert wait_until(lambda: _trainer_pid(run) is not None, timeout=30)
        trainer = _trainer_pid(run)
        assert trainer is not None
    run.signal(signal.SIGTERM)
    code, out = run.finish()
    assert code == 143, out[-3000:]
    assert "error[signal]:" in out and str(tmp_path) not in out
    if trainer is not None:
        assert gone(trainer)
    _assert_clean(case, raw_vault)


@pytest.mark.parametrize("phase", ["workspace", "train"])
def test_sigkill_in_phase_then_next_run_recovers(raw_vault: RawVault, tmp_path: Path,
                                                 tiny_model: Any, tiny_dataset: Path,
                                                 phase: str) -> None:
    case = prepare(raw_vault.vault, tmp_path, tiny_model, tiny_dataset)
    run = RunProcess(case, steps=5000, extra_env=_KERNEL)
    assert run.wait_for(f"[{phase}]"), "\n".join(run.lines)
    trainer = None
    if phase == "train":
        assert wait_until(lambda: _trainer_pid(run) is not None, timeout=30)
        trainer = _trainer_pid(run)
    run.signal(signal.SIGKILL)
    code, out = run.finish()
    assert code == -signal.SIGKILL, out[-3000:]
    marker = read_run_marker(case.state)
    assert marker is not None, "SIGKILL must leave the run marker behind"
    planted = 0
    if trainer is not None:
        # PR_SET_PDEATHSIG: the trainer dies with `run`; no orphan keeps writing.
        assert wait_until(lambda: gone(trainer), timeout=10), "orphan trainer survived"
        # The tied mount: gocryptfs (a foreground child with a parent-death SIGTERM) unmounts
        # itself, so no plaintext view outlives the SIGKILLed supervisor.
        assert wait_until(lambda: not _in_proc_mounts(case.mnt), timeout=5), \
            "the plaintext view outlived the supervisor"
        assert our_kernel_rules(case.tmp_path)
        # The dead run's scratch files stay encrypted in tmp/<run-id>: the next start wipes them.
        with case.opened() as ws:
            stale_tmp = ws.tmp_dir / marker.run_id
            assert stale_tmp.is_dir()
            (stale_tmp / "leftover.bin").write_bytes(b"x" * 4096)
        planted = 1
    second = RunProcess(case, steps=3, extra_env=_KERNEL)
    code, out = second.finish()
    assert code == 0, out[-3000:]
    # Only the killed run's own token outlives it (until its TTL): SIGKILL cannot be caught.
    _assert_clean(case, raw_vault, alive_tokens=1)
    with case.opened() as ws:
        records = app_events(ws)
    recovered = [r["fields"] for r in records if r["event"] == "recovered_stale_run"]
    assert len(recovered) == 1 and recovered[0]["stale_run_id"] == marker.run_id
    if planted:
        # The tied mount is already gone; the kernel may drop the watches on paths inside it
        # by itself when it goes, so recovery removes what is left (the final check above
        # shows none of ours remain).
        assert recovered[0]["unmounted"] is False and recovered[0]["rules_removed"] >= 1
        wiped = [r["fields"] for r in records if r["event"] == "stale_tmp_wiped"]
        assert len(wiped) == 1 and wiped[0]["wiped_files"] >= planted
    assert records[-1]["event"] == "teardown"
