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
    text,
    training,
    vault,
)

__all__ = ["GATHERERS", "NEEDS_TRAIN_SETTINGS", "gather_facts"]



def _gather_model(ctx: PolicyContext) -> Any:
    return text.model_facts(ctx.train) if text.is_llm(ctx.train) else model.gather(ctx)  # type: ignore[arg-type]


def _gather_dataset(ctx: PolicyContext) -> Any:
    return text.dataset_facts(ctx.train) if text.is_llm(ctx.train) else dataset.gather(ctx)  # type: ignore[arg-type]


def _gather_training(ctx: PolicyContext) -> Any:
    if text.is_llm(ctx.train):
        return text.training_facts(ctx, ctx.train)  # type: ignore[arg-type]
    return training.gather(ctx)


# The run's own sections have two sources: Kohya's TrainSettings or a train-llm config.
GATHERERS: dict[str, Callable[[PolicyContext], Any]] = {
    "process": process.gather,
    "fs": fs.gather,
    "network": network.gather,
    "gpu": gpu.gather,
    "vault": vault.gather,
    "audit": audit.gather,
    "model": _gather_model,
    "dataset": _gather_dataset,
    "training": _gather_training,
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
