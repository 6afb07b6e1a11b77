"""CEL rule expressions: compile them, check their fact references, fill reason templates.

Unknown facts are found at load time by walking the parsed expression (not by running it,
which would short-circuit past them). Shared by `profiles.py` (compiles rules while loading) and
`engine.py` (evaluates them), so the dependency runs one way: profiles → cel ← engine.
Must never evaluate anything but the CEL text of a policy file (no Python eval, no imports).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import celpy
import celpy.celtypes
from celpy.evaluation import CELEvalError
from lark import Token, Tree
from lark.exceptions import LarkError

from entrypoint.policy.facts import fact_schema, sample_facts

__all__ = [
    "CompiledExpression",
    "Outcome",
    "RuleSyntaxError",
    "activation",
    "compile_expression",
    "render_template",
    "template_references",
]

Outcome = Literal["pass", "fail", "error"]
# CEL macros whose first argument binds a loop variable, e.g. `net.interfaces.all(i, i == "lo")`.
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
# Identifiers CEL itself defines (type names used as `type(x) == null_type`).
_CEL_IDENTS = frozenset({"null_type", "bool", "int", "uint", "double", "string", "bytes",
                         "list", "map", "type", "dyn", "duration", "timestamp"})
_TEMPLATE_RE = re.compile(r"\{([^{}]*)\}")
_REF_RE = re.compile(r"^([a-z_]+)\.([a-z_0-9]+)$")


class RuleSyntaxError(Exception):
    """A rule's expression or template is invalid; profiles.py adds file, line and rule id."""


@dataclass(frozen=True, eq=False)
class CompiledExpression:
    """A parsed, reference-checked expression and the sections it reads."""

    text: str
    runner: celpy.Runner
    sections: frozenset[str]


@functools.lru_cache(maxsize=1)
def _environment() -> celpy.Environment:
    return celpy.Environment()


def _walk(tree: Tree[Any]) -> tuple[set[str], set[tuple[str, str]], set[str]]:
    """(root identifiers, (root, field) pairs, macro-bound variables) of a CEL parse tree."""
    roots: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    bound: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "ident":
            roots.add(str(node.children[0]))
        elif node.data == "member_dot":
            inner, name = node.children[0], node.children[1]
            prim = inner.children[0] if isinstance(inner, Tree) and inner.children else None
            if (isinstance(prim, Tree) and prim.data == "primary"
                    and isinstance(prim.children[0], Tree) and prim.children[0].data == "ident"):
                pairs.add((str(prim.children[0].children[0]), str(name)))
        elif node.data == "member_dot_arg" and str(node.children[1]) in _MACROS:
            args = node.children[2] if len(node.children) > 2 else None
            first = args.children[0] if isinstance(args, Tree) and args.children else None
            if isinstance(first, Tree):
                idents = [t for t in first.scan_values(lambda v: isinstance(v, Token))]
                if len(idents) == 1:
                    bound.add(str(idents[0]))
    return roots, pairs, bound


def _check_references(roots: set[str], pairs: set[tuple[str, str]],
                      bound: set[str]) -> frozenset[str]:
    schema = fact_schema()
    for root in sorted(roots - bound - _CEL_IDENTS):
        if root not in schema:
            raise RuleSyntaxError(f"unknown fact section '{root}' "
                                  f"(known: {', '.join(schema)})")
    for section, name in sorted(pairs):
        if section in schema and section not in bound and name not in schema[section]:
            raise RuleSyntaxError(f"unknown fact '{section}.{name}'")
    return frozenset(r for r in roots - bound if r in schema)


def activation(doc: dict[str, Any]) -> dict[str, Any]:
    """A Facts.to_dict() document as CEL values, one variable per fact section."""
    # JSON round trip: tuples -> lists, so json_to_cel sees only JSON types
    plain = json.loads(json.dumps(doc))
    return {section: celpy.json_to_cel(value) for section, value in plain.items()}


def compile_expression(text: str) -> CompiledExpression:
    """Parse `text`, check every fact it reads exists, and type-check it on sample facts.

    Raises RuleSyntaxError for a parse error, an unknown fact, a type mismatch or a non-bool
    result.
    """
    env = _environment()
    try:
        tree = env.compile(text)
    except (celpy.CELParseError, LarkError) as err:
        raise RuleSyntaxError(f"expression does not parse: {str(err).splitlines()[0]}") from None
    sections = _check_references(*_walk(tree))
    runner = env.program(tree)
    try:
        value = runner.evaluate(activation(sample_facts()))
    except CELEvalError as err:
        if len(err.args) > 1 and err.args[1] is TypeError:
            raise RuleSyntaxError("expression mixes types (e.g. int vs string)") from None
        value = celpy.celtypes.BoolType(True)  # depends on real values (e.g. a map key)
    if not isinstance(value, celpy.celtypes.BoolType):
        raise RuleSyntaxError("expression must evaluate to true or false")
    return CompiledExpression(text=text, runner=runner, sections=sections)


def template_references(template: str) -> set[tuple[str, str]]:
    """The `{section.field}` placeholders of a reason template.

    Raises RuleSyntaxError for a placeholder that is not `section.field` or names no fact.
    """
    schema = fact_schema()
    refs: set[tuple[str, str]] = set()
    for raw in _TEMPLATE_RE.findall(template):
        match = _REF_RE.match(raw.strip())
        if not match or match.group(2) not in schema.get(match.group(1), {}):
            raise RuleSyntaxError(f"reason placeholder {{{raw}}} names no fact")
        refs.add((match.group(1), match.group(2)))
    return refs


def _fmt(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) or "none"
    if isinstance(value, dict):
        shown = [f"{k}={_fmt(v)}" for k, v in value.items() if v]
        return ", ".join(shown) or "none"
    return str(value)


def render_template(template: str, facts: dict[str, Any]) -> str:
    """Fill `{section.field}` placeholders from a Facts.to_dict() document."""
    def _sub(match: re.Match[str]) -> str:
        section, _, name = match.group(1).strip().partition(".")
        return _fmt(facts.get(section, {}).get(name))

    return _TEMPLATE_RE.sub(_sub, template)


