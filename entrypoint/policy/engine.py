"""The rule engine: evaluate a resolved profile's rules against gathered facts.

A rule whose expression cannot be evaluated at run time counts as failed, so a missing fact
never lets a deny rule pass (fail closed). A rule evaluated in its own phase whose fact sections
were not gathered is an error with action deny, whatever its own action — it is never
"skipped", so `run` cannot pass a rule that `policy check` would fail. Compilation lives in
`cel.py`.
Must never evaluate anything but the CEL text of a policy file (no Python eval, no imports).
"""

from __future__ import annotations

from typing import Any

import celpy
import celpy.celtypes
from celpy.evaluation import CELEvalError

from entrypoint.policy.cel import Outcome, activation, render_template
from entrypoint.policy.decision import Decision, RuleResult
from entrypoint.policy.facts import Facts
from entrypoint.policy.profiles import Profile, Rule

__all__ = ["evaluate", "render_template"]


def _run(runner: celpy.Runner, activation: dict[str, Any]) -> Outcome:
    try:
        value = runner.evaluate(activation)
    except CELEvalError:
        return "error"
    if isinstance(value, celpy.celtypes.BoolType):
        return "pass" if bool(value) else "fail"
    return "error"


def _evaluate_rule(rule: Rule, facts: Facts, doc: dict[str, Any],
                   activation: dict[str, Any], phase: str,
                   not_applicable: frozenset[str]) -> RuleResult:
    def result(outcome: str, reason: str | None = None) -> RuleResult:
        return RuleResult(id=rule.id, action=rule.action, result=outcome, reason=reason)

    if not rule.enabled:
        return result("disabled", f"disabled by {rule.origin}")
    if phase != "all" and rule.phase != phase:
        return result("skipped", f"evaluated in phase {rule.phase}")
    missing = sorted(rule.sections - facts.gathered)
    if missing and phase == "all" and set(missing) <= not_applicable:
        # `policy check` without trainer arguments: there is no run to describe.
        return result("skipped", f"no trainer arguments given ({', '.join(missing)})")
    if missing:
        # SECURITY: fail closed — a rule whose facts were not gathered denies the run.
        return RuleResult(id=rule.id, action="deny", result="error",
                          reason=f"{rule.id}: facts not gathered in phase {rule.phase} "
                                 f"({', '.join(missing)}) — the rule cannot be checked, so the "
                                 f"run is refused")
    outcome = _run(rule.compiled.runner, activation)
    if outcome == "pass":
        return result("pass")
    reason = render_template(rule.reason, doc)
    if outcome == "error":
        reason += " (the rule could not be evaluated: a fact it reads is unknown)"
    return result(outcome, reason)


def evaluate(profile: Profile, facts: Facts, *, phase: str,
             not_applicable: frozenset[str] = frozenset()) -> Decision:
    """Evaluate every rule of `profile` for `phase` ("pre-mount", "post-mount" or "all").

    A rule of `phase` whose fact sections are missing is a deny error (fail closed); only in
    phase "all" may a caller name sections that do not apply (`policy check` with no trainer
    arguments has no model, dataset or training to describe) — those rules are "skipped".
    """
    doc = facts.to_dict()
    values = activation(doc)
    results = tuple(_evaluate_rule(r, facts, doc, values, phase, not_applicable)
                    for r in profile.rules)
    return Decision(profile=profile.name, profile_sha256=profile.sha256, phase=phase,
                    facts_sha256=facts.sha256(), results=results)
