"""Least access against a hostile trainer: after runs on datasets A and B, a run on A reads its
own inputs and nothing else — not B, not the registry, the audit log, an earlier run or the
key material — and grants never outlive their run (teardown, and the next start after a run
that never reached its teardown). Real OpenBao, gocryptfs, uid switch.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.run.access import SUPERVISOR_UMASK
from entrypoint.workspace.grants import grant_group_read
from tests.adversarial.hostile import FAKE_LORA, TRAINER_IDS, HostileTrainer, lifecycle
from tests.integration.run_support import RunCase, app_events, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture
def umask() -> Iterator[None]:
    """The supervisor's umask, as `run` sets it."""
    old = os.umask(SUPERVISOR_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def _owner_only(top: Path) -> None:
    for p in [top, *top.rglob("*")]:
        p.chmod(0o700 if p.is_dir() else 0o600)


@pytest.fixture
def case(dev_vault: Any, tmp_path: Path, tiny_model: Any, tiny_dataset: Path) -> RunCase:
    """A workspace with dataset A (datasets/demo) and B (datasets/b), imported owner-only."""
    run_case = prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)
    with run_case.opened() as ws:
        shutil.copytree(ws.datasets_dir / "demo", ws.datasets_dir / "b")
        _owner_only(ws.datasets_dir)
        _owner_only(ws.models_dir)
    return run_case


def _probe_script(first_run: str) -> str:
    b = "datasets/b/$(ls datasets/demo)"  # B mirrors A's folder names; the trainer cannot list B
    return (
        'probe own-dataset "cat datasets/demo/*/*.txt"\n'
        f'probe other-dataset "cat {b}/*.txt || ls datasets/b"\n'
        'probe datasets-listing "ls datasets"\n'
        'probe registry "cat registry.sqlite"\n'
        'probe audit-log "cat audit/app.jsonl"\n'
        f'probe earlier-run "ls runs/{first_run} || cat runs/{first_run}/lora.safetensors"\n'
        'probe key-dir "ls .secure-trainer"\n'
        + FAKE_LORA)


def test_third_run_reads_only_its_own_inputs(case: RunCase, umask: None) -> None:
    first = lifecycle(case, HostileTrainer(FAKE_LORA))
    first.execute()
    lifecycle(case, HostileTrainer(FAKE_LORA), dataset="datasets/b").execute()
    third_trainer = HostileTrainer(_probe_script(first.run_id))
    third = lifecycle(case, third_trainer)
    third.execute()

    assert third_trainer.verdicts() == {
        "own-dataset": "READ", "other-dataset": "DENIED", "datasets-listing": "DENIED",
        "registry": "DENIED", "audit-log": "DENIED", "earlier-run": "DENIED",
        "key-dir": "DENIED"}
    with case.opened() as ws:
        # Grants are gone after teardown; the mount root keeps its mode.
        granted = [p for top in (ws.models_dir, ws.datasets_dir)
                   for p in [top, *top.rglob("*")] if p.lstat().st_gid == TRAINER_IDS[1]]
        assert granted == []
        assert stat.S_IMODE(ws.mountpoint.stat().st_mode) == 0o711
        assert stat.S_IMODE(ws.registry_path.stat().st_mode) == 0o600
        for run_id in (first.run_id, third.run_id):
            run_dir = ws.runs_dir / run_id
            assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
            manifest = next(run_dir.rglob("manifest.json"))
            assert stat.S_IMODE(manifest.stat().st_mode) == 0o600
            assert json.loads(manifest.read_text())["run_id"] == run_id


def test_grants_left_by_a_dead_run_are_revoked_at_the_next_start(case: RunCase,
                                                                  umask: None) -> None:
    """A run SIGKILLed after its grants never revoked them; the next start does, first."""
    with case.opened() as ws:
        grant_group_read([ws.datasets_dir / "b"], root=ws.mountpoint, gid=TRAINER_IDS[1],
                         listable=[ws.datasets_dir / "b"])
    trainer = HostileTrainer('probe leftover-grant "ls datasets/b"\n' + FAKE_LORA)
    life = lifecycle(case, trainer)
    life.execute()
    assert trainer.verdicts() == {"leftover-grant": "DENIED"}
    with case.opened() as ws:
        events = [{"event": e["event"], **e["fields"]} for e in app_events(ws)]
        revoked = [e for e in events if e["event"] == "access_revoked" and e["when"] == "start"]
        assert revoked and revoked[0]["grants"] >= 2
