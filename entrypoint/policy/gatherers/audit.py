"""Audit facts: the configured mode, whether auditctl exists, kernel audit state, our rules.

Runs only `auditctl -s` and `auditctl -l` (argv, no shell, short timeout) and keeps counts;
never changes audit state.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from entrypoint.policy.context import PolicyContext
from entrypoint.policy.facts import AuditFacts

__all__ = ["RULE_KEY", "gather"]

# coupling: the key of policies/audit/secure-trainer.rules (helper E's Auditctl).
RULE_KEY = "secure-trainer"
_TIMEOUT_S = 5.0
# `auditctl -l` prints watches with `-k KEY` and syscall rules with `-F key=KEY`
_KEY_RE = re.compile(rf"(?:-k |key=){re.escape(RULE_KEY)}(?:\s|$)")


def _auditctl(binary: str, flag: str) -> str | None:
    try:
        done = subprocess.run([binary, flag], capture_output=True, text=True,
                              timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def gather(ctx: PolicyContext) -> AuditFacts:
    """Facts about audit: asks the kernel only when auditctl exists and we are root."""
    binary = shutil.which("auditctl")
    enabled = loaded = None
    if binary and os.geteuid() == 0:
        status = _auditctl(binary, "-s")
        if status is not None:
            for line in status.splitlines():
                key, _, value = line.partition(" ")
                if key == "enabled" and value.strip().isdigit():
                    enabled = int(value) != 0
        listing = _auditctl(binary, "-l")
        if listing is not None:
            loaded = sum(1 for line in listing.splitlines() if _KEY_RE.search(line))
    return AuditFacts(mode=ctx.audit_mode, auditctl_available=binary is not None,
                      kernel_enabled=enabled, rules_loaded=loaded)
