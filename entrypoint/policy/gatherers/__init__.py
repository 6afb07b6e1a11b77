"""Fact gatherers, one module per section, and the registry that maps section → gatherer.

Gatherers read the live system and the PolicyContext; none of them logs, and none of them
may put a secret, a data path, a file name or a caption into a fact.
coupling: keys are the section names of entrypoint/policy/facts.py (SECTION_TYPES).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from entrypoint.policy.context import PolicyContext
from entrypoint.policy.facts import SECTIONS, Facts
from entrypoint.policy.gatherers import (
    audit,
    dataset,
    fs,
    gpu,
    model,
    network,
    process,
    training,
    vault,
)

__all__ = ["GATHERERS", "NEEDS_TRAIN_SETTINGS", "gather_facts"]

GATHERERS: dict[str, Callable[[PolicyContext], Any]] = {
    "process": process.gather,
    "fs": fs.gather,
    "network": network.gather,
    "gpu": gpu.gather,
    "vault": vault.gather,
    "audit": audit.gather,
    "model": model.gather,
    "dataset": dataset.gather,
    "training": training.gather,
}
# Sections that describe the training run itself: without trainer settings there is nothing
# to describe, so they stay None (a lifecycle phase then denies the rules reading them, fail
# closed; `policy check` without trainer arguments reports them as skipped).
NEEDS_TRAIN_SETTINGS = frozenset({"model", "dataset", "training"})


def gather_facts(sections: Iterable[str], ctx: PolicyContext) -> Facts:
    """Gather the named sections into one Facts document (unknown names: KeyError, a bug)."""
    wanted = set(sections)
    values: dict[str, Any] = {}
    for name in SECTIONS:
        if name not in wanted or (name in NEEDS_TRAIN_SETTINGS and ctx.train is None):
            continue
        values[name] = GATHERERS[name](ctx)
    return Facts(**values)
