"""Kernel audit for one run: load our rules after the mount, remove exactly them at teardown.

`RunAudit(mode, auditctl, state_dir)` is the lifecycle's view of `entrypoint/audit/auditctl.py`:
`start(paths)` (kernel: render + load; host: report what the host has) and `stop()`. The rules
a run loaded are also written to `<state_dir>/kernel-audit.rules.json` (0600), so a run that
died by SIGKILL can have exactly its rules removed by the next start (`recover_stale`).
SECURITY: never deletes a rule it did not add (a rule already present — the host's or another
run's identical one — is skipped, not adopted); never `auditctl -D`. Fails closed: a rule that
cannot be loaded stops the run (AuditError, exit 6).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from entrypoint.audit.auditctl import (
    Auditctl,
    AuditMode,
    AuditPaths,
    AuditRule,
    LoadedRules,
    default_rules_file,
    normalise_rule,
    render_rules,
)
from entrypoint.errors import AuditError

__all__ = ["LOADED_RULES_FILE", "AuditOutcome", "RunAudit"]

LOADED_RULES_FILE = "kernel-audit.rules.json"


@dataclass(frozen=True)
class AuditOutcome:
    """What one audit step did, as app-audit fields (counts and flags, never paths)."""

    event: str
    fields: dict[str, object]


class RunAudit:
    """Kernel/host audit around one run. `auditctl` is injected (tests use the real binary)."""

    def __init__(self, mode: AuditMode, auditctl: Auditctl, state_dir: Path,
                 rules_file: Path | None = None) -> None:
        self.mode = mode
        self._ctl = auditctl
        self._state = state_dir / LOADED_RULES_FILE
        self._rules_file = rules_file
        self._loaded: LoadedRules | None = None

    def start(self, paths: AuditPaths) -> AuditOutcome | None:
        """Kernel: load the rendered rules (skipping ones already present); host: report.

        Returns the record to write, None in app mode. Raises AuditError when the template is
        unreadable or invalid or a rule does not load (what was added is removed again).
        """
        if self.mode is AuditMode.APP:
            return None
        if self.mode is AuditMode.HOST:
            report = self._ctl.host_report()
            return AuditOutcome("audit_rules_host", {"visible": report.visible,
                                                     "our_rules": report.our_rules})
        try:
            template = (self._rules_file or default_rules_file()).read_text()
        except OSError:
            raise AuditError("the kernel audit rules file cannot be read") from None
        rules = render_rules(template, paths, key=self._ctl.key)
        present = {normalise_rule(r) for r in self._ctl.ours()}
        fresh = [r for r in rules if normalise_rule(" ".join(r.args)) not in present]
        # Record intent before loading: a SIGKILL mid-load still leaves a list to clean up.
        self._save(fresh)
        try:
            loaded = self._ctl.load(fresh)
        except AuditError:
            self._state.unlink(missing_ok=True)  # load() already removed what it had added
            raise
        loaded.skipped = len(rules) - len(fresh)
        self._loaded = loaded
        return AuditOutcome("audit_rules_loaded", {"count": len(loaded.rules),
                                                   "skipped": loaded.skipped,
                                                   "kernel_enabled": self._ctl.enabled()})

    def stop(self) -> AuditOutcome | None:
        """Remove exactly the rules `start` loaded; None when there were none to remove.

        Raises AuditError when one of them is still listed afterwards.
        """
        if self._loaded is None:
            return None
        count = self._ctl.remove(self._loaded)
        self._loaded = None
        self._state.unlink(missing_ok=True)
        return AuditOutcome("audit_rules_removed", {"count": count})

    def recover_stale(self) -> int | None:
        """Remove the rules a killed run left listed in the state dir; their count, or None.

        Works in every mode (the dead run may have used another). Raises AuditError when the
        list is unreadable or a rule cannot be removed.
        """
        try:
            data = json.loads(self._state.read_text())
            rules = [AuditRule(tuple(str(a) for a in r)) for r in data["rules"]]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            raise AuditError("the stale run's audit rule list is unreadable") from None
        listed = {normalise_rule(r) for r in self._ctl.ours()}
        stale = LoadedRules(rules=[r for r in rules if normalise_rule(" ".join(r.args)) in listed])
        count = self._ctl.remove(stale) if stale.rules else 0
        self._state.unlink(missing_ok=True)
        return count

    def _save(self, rules: list[AuditRule]) -> None:
        try:
            self._state.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self._state.with_name(f".{self._state.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps({"rules": [list(r.args) for r in rules]}).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._state)
        except OSError:
            raise AuditError("could not record the loaded audit rules in the state dir") from None
