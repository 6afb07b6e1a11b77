"""`run` with ST_AUDIT_MODE=kernel|host: real auditctl rules for the run, removed exactly after."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from entrypoint.audit.auditctl import Auditctl, AuditMode, AuditPaths, AuditRule
from entrypoint.audit.run_rules import LOADED_RULES_FILE, RunAudit
from entrypoint.vault.devserver import DevVault
from tests.conftest import REPO_ROOT
from tests.integration.run_support import (
    RunProcess,
    app_events,
    live_role_tokens,
    our_kernel_rules,
    prepare,
)

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]


def test_kernel_mode_rules_live_only_during_the_run(dev_vault: DevVault, tmp_path: Path,
                                                   tiny_model: Any, tiny_dataset: Path) -> None:
    case = prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)
    foreign_dir = tmp_path / "foreign"
    foreign_dir.mkdir()
    foreign = Auditctl(key="st-test-foreign")
    pre = foreign.load([AuditRule(("-w", str(foreign_dir), "-p", "wa", "-k", "st-test-foreign"))])
    try:
        run = RunProcess(case, steps=3, extra_env={"ST_AUDIT_MODE": "kernel"})
        assert run.wait_for("[train]"), "\n".join(run.lines)
        during = our_kernel_rules(tmp_path)
        execve_during = [r for r in Auditctl().ours() if "-S execve" in r]
        code, out = run.finish()
        assert code == 0, out[-3000:]
        assert "[audit]" in out
        # Every watch of the template, on this run's real paths, was live while it trained.
        for path, perm in ((case.mnt, "wa"), (case.cipher, "wa"),
                           (case.cipher / "gocryptfs.conf", "rwa"),
                           (case.creds / "role_id", "rwa"), (case.creds / "secret_id", "rwa")):
            assert f"-w {path} -p {perm} -k secure-trainer" in during, during
        assert any(r.endswith("key=secure-trainer") for r in execve_during)
        # Afterwards: none of ours, the foreign rule untouched, no leftover rule list.
        assert our_kernel_rules(tmp_path) == []
        assert f"-w {foreign_dir} -p wa -k st-test-foreign" in Auditctl().list_rules()
        assert not (case.state / LOADED_RULES_FILE).exists()
        assert live_role_tokens(dev_vault, case.role) == 0
        with case.opened() as ws:
            events = {e["event"]: e["fields"] for e in app_events(ws)}
        assert events["audit_rules_loaded"]["count"] >= len(during) >= 5
        assert events["audit_rules_removed"]["count"] == events["audit_rules_loaded"]["count"]
    finally:
        foreign.remove(pre)


def test_kernel_rule_load_failure_fails_closed(dev_vault: DevVault, tmp_path: Path,
                                               tiny_model: Any, tiny_dataset: Path) -> None:
    """A rule the kernel refuses → exit 6, one line, nothing mounted, none of our rules left."""
    case = prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)
    policies = tmp_path / "policies"
    shutil.copytree(REPO_ROOT / "policies", policies)
    rules = policies / "audit" / "secure-trainer.rules"
    # The kernel refuses a watch whose parent directory does not exist; it comes last, so the
    # rules before it are loaded first and must be rolled back.
    rules.write_text(rules.read_text() + "-w ${workspace}/no-such-dir/x -p wa -k secure-trainer\n")
    run = RunProcess(case, steps=3, extra_env={"ST_AUDIT_MODE": "kernel",
                                               "ST_POLICY_DIR": str(policies)})
    code, out = run.finish()
    assert code == 6, out[-3000:]
    errors = [ln for ln in out.splitlines() if ln.startswith("error[")]
    assert len(errors) == 1 and errors[0].startswith("error[audit]:")
    assert str(tmp_path) not in out
    assert "[train]" not in out
    assert not case.fs.is_mounted(case.mnt)
    assert our_kernel_rules(tmp_path) == []
    assert not (case.state / "run.marker").exists()
    assert live_role_tokens(dev_vault, case.role) == 0


def test_host_mode_records_what_the_host_has(tmp_path: Path) -> None:
    """Host mode loads nothing and reports our rules that the host loaded."""
    ctl = Auditctl()
    watched = tmp_path / "watched"
    watched.mkdir()
    host_rule = ctl.load([AuditRule(("-w", str(watched), "-p", "wa", "-k", "secure-trainer"))])
    try:
        before = len(ctl.ours())
        audit = RunAudit(AuditMode.HOST, ctl, tmp_path / "state")
        outcome = audit.start(AuditPaths(workspace=watched, cipher_dir=watched, trainer_uid=10001))
        assert outcome is not None and outcome.event == "audit_rules_host"
        assert outcome.fields["visible"] is True and outcome.fields["our_rules"] == before >= 1
        assert len(ctl.ours()) == before and audit.stop() is None
    finally:
        ctl.remove(host_rule)
