"""Privacy units of user-level DP-SGD and their Poisson sampling.

A unit is every example about one subject (dp_unit subject) or one example (dp_unit record).
Each step includes each unit independently with probability q = B / N (B the expected batch
of units, N the unit count), drawn from the OS CSPRNG: amplification by subsampling assumes the
batch composition is secret, so the run seed must not decide it. Never logs; holds indices and
pseudonymous ids only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from secure_trainer.errors import DataRejected


def group_units(subjects: Sequence[str | None], unit: str) -> list[list[int]]:
    """Example indices grouped into privacy units, in first-seen order.

    Raises DataRejected when unit is `subject` and some example has no subject.
    """
    if unit == "record":
        return [[i] for i in range(len(subjects))]
    if any(s is None for s in subjects):
        raise DataRejected("dp_unit subject needs a subject id on every record (or use "
                           "dp_unit record)")
    groups: dict[str, list[int]] = {}
    for index, subject in enumerate(subjects):
        groups.setdefault(str(subject), []).append(index)
    return list(groups.values())


def sample_rate(expected_batch: int, units: int) -> float:
    """q = min(1, B / N)."""
    return min(1.0, expected_batch / max(1, units))


def poisson_sample(units: int, rate: float, rng: random.Random | None = None) -> list[int]:
    """Indices of the units included in one step (each independently with probability rate)."""
    draw = rng or random.SystemRandom()
    return [u for u in range(units) if draw.random() < rate]
