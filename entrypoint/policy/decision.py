"""The decision record: which profile (and its hash) judged which facts (by hash), rule by rule.

The record is what goes to the app audit log and what `policy check` prints. It holds rule
ids, results and reasons rendered from facts — never a fact value that could name data (facts
carry none by construction) and never the facts themselves (only their sha256).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from entrypoint.errors import PolicyDenied

__all__ = ["Decision", "DeniedByPolicy", "RuleResult", "Verdict"]

Verdict = Literal["allow", "warn", "deny"]
_FAILED = ("fail", "error")


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome: pass | fail | error | skipped | disabled, and why when not pass."""

    id: str
    action: str  # deny | warn
    result: str
    reason: str | None = None

    @property
    def failed(self) -> bool:
        """True when the rule was evaluated and did not hold (or could not be evaluated)."""
        return self.result in _FAILED


@dataclass(frozen=True)
class Decision:
    """The outcome of one evaluation of a profile over one fact document."""

    profile: str
    profile_sha256: str
    phase: str
    facts_sha256: str
    results: tuple[RuleResult, ...]

    @property
    def denials(self) -> tuple[RuleResult, ...]:
        """Failed deny rules."""
        return tuple(r for r in self.results if r.failed and r.action == "deny")

    @property
    def warnings(self) -> tuple[RuleResult, ...]:
        """Failed warn rules."""
        return tuple(r for r in self.results if r.failed and r.action == "warn")

    @property
    def verdict(self) -> Verdict:
        """deny when any deny rule failed, else warn when any warn rule failed, else allow."""
        if self.denials:
            return "deny"
        return "warn" if self.warnings else "allow"

    @property
    def denied(self) -> bool:
        """True when the run must not proceed."""
        return self.verdict == "deny"

    def counts(self) -> dict[str, int]:
        """Number of rules per result, plus `deny`/`warn` for failed rules by action."""
        out = {"deny": len(self.denials), "warn": len(self.warnings)}
        for r in self.results:
            if not r.failed:
                out[r.result] = out.get(r.result, 0) + 1
        return out

    def to_audit_fields(self) -> dict[str, Any]:
        """JSON-safe fields for AppAuditLog.append("policy_decision", **fields)."""
        return {
            "profile": self.profile,
            "profile_sha256": self.profile_sha256,
            "phase": self.phase,
            "facts_sha256": self.facts_sha256,
            "verdict": self.verdict,
            "rules": [{"id": r.id, "action": r.action, "result": r.result}
                      for r in self.results],
            "failed": [{"id": r.id, "action": r.action, "reason": r.reason}
                       for r in self.results if r.failed],
        }

    def to_json(self, facts: dict[str, Any] | None = None) -> str:
        """The record as JSON (with the fact document when given, for `policy check --json`)."""
        doc: dict[str, Any] = {
            "profile": self.profile, "profile_sha256": self.profile_sha256,
            "phase": self.phase, "facts_sha256": self.facts_sha256, "verdict": self.verdict,
            "counts": self.counts(), "rules": [asdict(r) for r in self.results],
        }
        if facts is not None:
            doc["facts"] = facts
        return json.dumps(doc, indent=2, sort_keys=False)

    def render(self) -> str:
        """Human-readable report, one line per rule, failures first."""
        order = {"fail": 0, "error": 0, "pass": 1, "skipped": 2, "disabled": 3}
        width = max((len(r.id) for r in self.results), default=10)
        lines = [f"policy {self.profile}  sha256:{self.profile_sha256}",
                 f"phase {self.phase}  facts sha256:{self.facts_sha256}"]
        ranked = sorted(self.results, key=lambda r: (order.get(r.result, 9),
                                                     r.action != "deny"))
        for r in ranked:
            label = r.action.upper() if r.failed else {"pass": "ok", "skipped": "skip",
                                                        "disabled": "off"}.get(r.result, r.result)
            lines.append(f"  {label:<5} {r.id:<{width}}  {r.reason or ''}".rstrip())
        counts = self.counts()
        summary = ", ".join(f"{counts[k]} {k}" for k in
                            ("deny", "warn", "pass", "skipped", "disabled") if counts.get(k))
        lines.append(f"verdict: {self.verdict} ({summary})")
        return "\n".join(lines)

    def denied_message(self) -> str:
        """The PolicyDenied message: one line per failed deny rule, id and reason."""
        head = (f"policy '{self.profile}' denied the run "
                f"({len(self.denials)} rule{'s' if len(self.denials) != 1 else ''} failed):")
        return "\n".join([head] + [f"  [{r.id}] {r.reason}" for r in self.denials])

    def raise_if_denied(self) -> None:
        """Raise DeniedByPolicy (exit 3) when a deny rule failed; return otherwise."""
        if self.denied:
            raise DeniedByPolicy(self)


class DeniedByPolicy(PolicyDenied):
    """PolicyDenied carrying the Decision, so the caller can audit it before exiting (exit 3)."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.denied_message())
        self.decision = decision
