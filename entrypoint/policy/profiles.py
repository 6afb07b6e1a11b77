"""Policy profiles: load YAML rule sets, resolve `extends`, apply overrides, validate strictly.

Every problem in a policy file — YAML syntax, an unknown key, an unknown fact in a rule, a rule
id defined or overridden twice — is a ConfigError (exit 2) naming the file by basename, the
line and the rule id. Must never evaluate anything from the file but CEL (yaml.SafeLoader only).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from entrypoint.errors import ConfigError
from entrypoint.policy.cel import (
    CompiledExpression,
    RuleSyntaxError,
    compile_expression,
    template_references,
)
from entrypoint.policy.phases import PHASE_SECTIONS, PHASES

__all__ = ["Profile", "Rule", "builtin_profiles", "load_profile", "policy_dir"]

_ID_RE = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_PROFILE_KEYS = frozenset({"name", "description", "extends", "rules", "override", "disable"})
_RULE_KEYS = frozenset({"id", "description", "expression", "action", "reason", "phase"})
_ACTIONS = ("deny", "warn")


@dataclass(frozen=True)
class Rule:
    """One effective rule after `extends`/override/disable; `origin` is `file.yaml:line`."""

    id: str
    description: str
    expression: str
    action: str
    reason: str
    phase: str
    compiled: CompiledExpression
    origin: str
    enabled: bool = True

    @property
    def sections(self) -> frozenset[str]:
        """Fact sections the expression reads."""
        return self.compiled.sections


@dataclass(frozen=True)
class Profile:
    """A resolved profile: its rules in order and a hash over every file of its chain."""

    name: str
    sha256: str
    rules: tuple[Rule, ...]
    files: tuple[str, ...]  # basenames, base first

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id (KeyError when absent)."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


class _Map(dict):  # type: ignore[type-arg]
    line: int = 0


class _Seq(list):  # type: ignore[type-arg]
    lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader that records line numbers and rejects duplicate keys."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    out = _Map()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(n, deep=True) for n in node.value)
    out.lines = [n.start_mark.line + 1 for n in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def policy_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the built-in profiles live: $ST_POLICY_DIR, else the repository's policies/."""
    env = os.environ if env is None else env
    override = env.get("ST_POLICY_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "policies"


def builtin_profiles(directory: Path | None = None) -> list[str]:
    """Names of the profiles in the policy directory."""
    return sorted(p.stem for p in (directory or policy_dir()).glob("*.yaml"))


class _FileLoader:
    """Loads one profile chain; `stack` detects `extends` cycles."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stack: list[Path] = []

    def resolve(self, ref: str, relative_to: Path | None) -> Path:
        if "/" in ref or ref.endswith((".yaml", ".yml")):
            path = Path(ref)
            if not path.is_absolute() and relative_to is not None:
                path = relative_to.parent / path
            if not path.is_file():
                raise ConfigError(f"policy file not found: {path.name}")
            return path
        if not _NAME_RE.match(ref) or not (self.directory / f"{ref}.yaml").is_file():
            known = ", ".join(builtin_profiles(self.directory)) or "none"
            raise ConfigError(f"unknown policy profile '{ref}' (known: {known})")
        return self.directory / f"{ref}.yaml"

    def load(self, ref: str, relative_to: Path | None = None) -> tuple[str, list[Rule], list[str]]:
        path = self.resolve(ref, relative_to)
        if path.resolve() in self.stack:
            raise ConfigError(f"{path.name}: `extends` forms a cycle")
        self.stack.append(path.resolve())
        try:
            return self._load_file(path)
        finally:
            self.stack.pop()

    def _load_file(self, path: Path) -> tuple[str, list[Rule], list[str]]:
        raw = path.read_bytes()
        doc = _parse(path.name, raw)
        fname = path.name
        _check_keys(doc, _PROFILE_KEYS, fname, doc.line, None)
        name = doc.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(f"{fname}:{doc.line}: `name` must be a lower-case profile name")
        rules: dict[str, Rule] = {}
        digests: list[str] = []
        base = doc.get("extends")
        if base is not None:
            if not isinstance(base, str):
                raise ConfigError(f"{fname}:{doc.line}: `extends` must be a profile name or file")
            _, base_rules, digests = self.load(base, path)
            rules = {r.id: r for r in base_rules}
        inherited = set(rules)
        for item, line in _items(doc, "rules", fname):
            rule = _new_rule(item, fname, line)
            if rule.id in rules:
                where = "in the base profile; use `override`" if rule.id in inherited else "twice"
                raise ConfigError(f"{fname}:{line}: rule {rule.id}: defined {where}")
            rules[rule.id] = rule
        touched: dict[str, int] = {}
        for item, line in _items(doc, "override", fname):
            rid = _rule_id(item, fname, line)
            _once(touched, rid, fname, line, inherited)
            rules[rid] = _override(rules[rid], item, fname, line)
        disable = doc.get("disable")
        if disable is None:
            disable = _Seq()
            disable.lines = []
        if not isinstance(disable, _Seq):
            raise ConfigError(f"{fname}:{doc.line}: `disable` must be a list of rule ids")
        for rid, line in zip(disable, disable.lines):
            if not isinstance(rid, str):
                raise ConfigError(f"{fname}:{line}: `disable` entries must be rule ids")
            _once(touched, rid, fname, line, inherited)
            rules[rid] = replace(rules[rid], enabled=False, origin=f"{fname}:{line}")
        digest = f"{fname}\0{hashlib.sha256(raw).hexdigest()}"
        return name, list(rules.values()), [*digests, digest]


def _parse(fname: str, raw: bytes) -> _Map:
    try:
        doc = yaml.load(raw, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 0
        rid = _nearest_rule_id(raw, line)
        raise ConfigError(f"{fname}:{line}: rule {rid}: YAML syntax error: "
                          f"{err.problem or 'malformed'}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{fname}: YAML syntax error") from None
    if not isinstance(doc, _Map):
        raise ConfigError(f"{fname}:1: a policy file must be a mapping with `name` and `rules`")
    return doc


def _nearest_rule_id(raw: bytes, line: int) -> str:
    """The last `id:` at or above `line` (the rule a syntax error sits in), or `(none)`."""
    found = "(none)"
    for n, text in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if n > line:
            break
        match = re.match(r"^\s*-?\s*id:\s*['\"]?([A-Za-z0-9_.\-]+)", text)
        if match:
            found = match.group(1)
    return found


def _check_keys(item: Mapping[str, Any], allowed: frozenset[str], fname: str, line: int,
                rid: str | None) -> None:
    unknown = sorted(str(k) for k in item if k not in allowed)
    if unknown:
        who = f"rule {rid}: " if rid else ""
        raise ConfigError(f"{fname}:{line}: {who}unknown key(s) {', '.join(unknown)} "
                          f"(allowed: {', '.join(sorted(allowed))})")


def _items(doc: _Map, key: str, fname: str) -> list[tuple[_Map, int]]:
    items = doc.get(key)
    if items is None:
        return []
    if not isinstance(items, _Seq) or not all(isinstance(i, _Map) for i in items):
        raise ConfigError(f"{fname}:{doc.line}: `{key}` must be a list of mappings")
    return [(i, i.line) for i in items]


def _rule_id(item: _Map, fname: str, line: int) -> str:
    rid = item.get("id")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise ConfigError(f"{fname}:{line}: rule {rid!r}: `id` must look like `section.name`")
    return rid


def _once(touched: dict[str, int], rid: str, fname: str, line: int, known: set[str]) -> None:
    if rid not in known:
        raise ConfigError(f"{fname}:{line}: rule {rid}: not defined by the base profile")
    if rid in touched:
        raise ConfigError(f"{fname}:{line}: rule {rid}: overridden twice "
                          f"(first at line {touched[rid]})")
    touched[rid] = line


def _text(item: _Map, key: str, fname: str, line: int, rid: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{fname}:{line}: rule {rid}: `{key}` must be a non-empty string")
    return " ".join(value.split()) if key != "expression" else value.strip()


def _build(rid: str, fields: Mapping[str, Any], phase: str | None, fname: str,
           line: int) -> Rule:
    """Compile and validate a rule; `phase` None means derive it from the facts read."""
    if fields["action"] not in _ACTIONS:
        raise ConfigError(f"{fname}:{line}: rule {rid}: `action` must be deny or warn")
    try:
        compiled = compile_expression(fields["expression"])
        refs = {s for s, _ in template_references(fields["reason"])}
    except RuleSyntaxError as err:
        raise ConfigError(f"{fname}:{line}: rule {rid}: {err}") from None
    needed = compiled.sections | refs
    if phase is None:
        phase = next((p for p in PHASES if needed <= PHASE_SECTIONS[p]), None)
        if phase is None:
            raise ConfigError(f"{fname}:{line}: rule {rid}: reads facts of both phases "
                              f"({', '.join(sorted(needed))}); split it into two rules")
    elif phase not in PHASES:
        raise ConfigError(f"{fname}:{line}: rule {rid}: `phase` must be one of "
                          f"{', '.join(PHASES)}")
    elif not needed <= PHASE_SECTIONS[phase]:
        extra = ", ".join(sorted(needed - PHASE_SECTIONS[phase]))
        raise ConfigError(f"{fname}:{line}: rule {rid}: reads facts not gathered in "
                          f"{phase} ({extra})")
    return Rule(id=rid, description=fields["description"], expression=fields["expression"],
                action=fields["action"], reason=fields["reason"], phase=phase,
                compiled=compiled, origin=f"{fname}:{line}")


def _new_rule(item: _Map, fname: str, line: int) -> Rule:
    rid = _rule_id(item, fname, line)
    _check_keys(item, _RULE_KEYS, fname, line, rid)
    fields = {k: _text(item, k, fname, line, rid)
              for k in ("description", "expression", "action", "reason")}
    phase = item.get("phase")
    return _build(rid, fields, str(phase) if phase is not None else None, fname, line)


def _override(base: Rule, item: _Map, fname: str, line: int) -> Rule:
    rid = base.id
    _check_keys(item, _RULE_KEYS, fname, line, rid)
    fields = {k: _text(item, k, fname, line, rid) if k in item else getattr(base, k)
              for k in ("description", "expression", "action", "reason")}
    # without its own `phase` an override keeps the base rule's phase
    phase = str(item["phase"]) if "phase" in item else base.phase
    return _build(rid, fields, phase, fname, line)


def load_profile(ref: str, *, directory: Path | None = None) -> Profile:
    """Load a built-in profile by name or a profile file by path, with its `extends` chain.

    Raises ConfigError (exit 2) for an unknown name, a missing file or any invalid content;
    messages name the file's basename, the line and the rule id.
    """
    loader = _FileLoader(directory or policy_dir())
    name, rules, digests = loader.load(ref)
    sha = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    return Profile(name=name, sha256=sha, rules=tuple(rules),
                   files=tuple(d.split("\0")[0] for d in digests))
