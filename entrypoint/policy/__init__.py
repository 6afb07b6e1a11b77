"""Init-time policy enforcement: facts, rules as data (CEL in policies/*.yaml), decisions.

Public surface: `load_profile`, `PolicyContext`, `preflight`, `check`, `Decision`.
"""

from __future__ import annotations

from entrypoint.policy.context import Canary, PolicyContext, TokenInfo, parse_canary
from entrypoint.policy.decision import Decision, DeniedByPolicy, RuleResult
from entrypoint.policy.preflight import check, preflight
from entrypoint.policy.profiles import Profile, Rule, load_profile

__all__ = [
    "Canary",
    "Decision",
    "DeniedByPolicy",
    "PolicyContext",
    "Profile",
    "Rule",
    "RuleResult",
    "TokenInfo",
    "check",
    "load_profile",
    "parse_canary",
    "preflight",
]
