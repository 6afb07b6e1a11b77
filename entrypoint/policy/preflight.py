"""The lifecycle's entry to the policy: gather a phase's facts, evaluate, raise on deny.

`preflight("pre-mount", ctx)` runs before Vault login and the mount; `preflight("post-mount",
ctx)` once the workspace (dataset, model) is visible. Warnings are logged by rule id and
reason only; must never log facts, paths or captions.
"""

from __future__ import annotations

import logging

from entrypoint.errors import ConfigError
from entrypoint.policy.context import PolicyContext
from entrypoint.policy.decision import Decision
from entrypoint.policy.engine import evaluate
from entrypoint.policy.facts import SECTIONS, Facts
from entrypoint.policy.gatherers import NEEDS_TRAIN_SETTINGS, gather_facts
from entrypoint.policy.phases import PHASE_SECTIONS, Phase

__all__ = ["check", "preflight"]

_log = logging.getLogger("entrypoint.policy")


def _log_warnings(decision: Decision) -> None:
    for r in decision.warnings:
        _log.warning("policy warning %s: %s", r.id, r.reason)


def preflight(phase: Phase, ctx: PolicyContext) -> Decision:
    """Gather the facts of `phase`, evaluate the rules of that phase, and return the decision.

    Raises DeniedByPolicy (a PolicyDenied, exit 3; `.decision` holds the record for the audit
    log) when a deny rule fails; warn failures are logged and returned. Raises ConfigError for
    an unknown phase, DataRejected (exit 8) when a caption file cannot be read.
    """
    if phase not in PHASE_SECTIONS:
        raise ConfigError(f"unknown policy phase {phase!r}")
    facts = gather_facts(PHASE_SECTIONS[phase], ctx)
    decision = evaluate(ctx.profile, facts, phase=phase)
    decision.raise_if_denied()
    _log_warnings(decision)
    return decision


def check(ctx: PolicyContext) -> tuple[Decision, Facts]:
    """Gather every section and evaluate every rule at once (`policy check`).

    Without trainer settings the model, dataset and training rules are reported as skipped
    (there is no run to judge); with them, the verdict is the one `run` reaches over its phases.

    Never raises PolicyDenied: the caller decides what a deny means. Gatherers raise nothing
    of ours except DataRejected for an unreadable caption file.
    """
    facts = gather_facts(SECTIONS, ctx)
    absent = NEEDS_TRAIN_SETTINGS if ctx.train is None else frozenset()
    return evaluate(ctx.profile, facts, phase="all", not_applicable=absent), facts
