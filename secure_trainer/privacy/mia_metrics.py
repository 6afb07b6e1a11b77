"""Membership-inference metrics over attack scores: ROC, AUC, TPR at a fixed FPR, bootstrap CIs.

Higher score = "more likely a member". Pure functions over lists of floats; no I/O.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Scores = Sequence[float]


@dataclass(frozen=True)
class Interval:
    """A statistic with its two-sided percentile bootstrap confidence interval."""

    value: float
    low: float
    high: float
    level: float = 0.95


def auc(members: Scores, nonmembers: Scores) -> float:
    """Area under the ROC curve = P(member score > non-member score) + ½ P(tie)
    (the Mann–Whitney statistic). Raises ValueError for an empty side."""
    if not members or not nonmembers:
        raise ValueError("both sides need scores")
    wins = 0.0
    ordered = sorted(nonmembers)

    for m in members:
        below = bisect.bisect_left(ordered, m)
        ties = bisect.bisect_right(ordered, m) - below
        wins += below + 0.5 * ties
    return wins / (len(members) * len(nonmembers))


def roc_points(members: Scores, nonmembers: Scores) -> list[tuple[float, float]]:
    """(FPR, TPR) for every threshold "score ≥ t", from (0, 0) to (1, 1)."""
    thresholds = sorted(set(members) | set(nonmembers), reverse=True)
    points = [(0.0, 0.0)]
    for t in thresholds:
        points.append((sum(s >= t for s in nonmembers) / len(nonmembers),
                       sum(s >= t for s in members) / len(members)))
    if points[-1] != (1.0, 1.0):
        points.append((1.0, 1.0))
    return points


def tpr_at_fpr(members: Scores, nonmembers: Scores, max_fpr: float) -> float:
    """The highest TPR of any threshold whose FPR is ≤ max_fpr. With n non-members and
    max_fpr < 1/n this is the fraction of members scoring above every non-member."""
    return max(tpr for fpr, tpr in roc_points(members, nonmembers) if fpr <= max_fpr + 1e-12)


def bootstrap(members: Scores, nonmembers: Scores,
              statistic: Callable[[Scores, Scores], float], *, rounds: int, seed: int,
              level: float = 0.95) -> Interval:
    """`statistic` with a percentile CI from `rounds` resamples of each side (with replacement,
    sizes kept, seeded)."""
    rng = random.Random(seed)
    values = sorted(
        statistic([rng.choice(members) for _ in members],
                  [rng.choice(nonmembers) for _ in nonmembers])
        for _ in range(rounds))
    tail = (1.0 - level) / 2.0
    low = values[int(tail * (rounds - 1))]
    high = values[round((1.0 - tail) * (rounds - 1))]
    return Interval(value=statistic(members, nonmembers), low=low, high=high, level=level)


@dataclass(frozen=True)
class AttackMetrics:
    """AUC and low-FPR TPRs of one attack, each with its bootstrap CI."""

    auc: Interval
    tpr_at_1pct_fpr: Interval
    tpr_at_01pct_fpr: Interval
    roc: tuple[tuple[float, float], ...]


def attack_metrics(members: Scores, nonmembers: Scores, *, rounds: int = 1000,
                   seed: int = 0) -> AttackMetrics:
    """Every metric the audit reports, CIs from the same number of bootstrap rounds."""
    return AttackMetrics(
        auc=bootstrap(members, nonmembers, auc, rounds=rounds, seed=seed),
        tpr_at_1pct_fpr=bootstrap(members, nonmembers, lambda m, n: tpr_at_fpr(m, n, 0.01),
                                  rounds=rounds, seed=seed + 1),
        tpr_at_01pct_fpr=bootstrap(members, nonmembers, lambda m, n: tpr_at_fpr(m, n, 0.001),
                                   rounds=rounds, seed=seed + 2),
        roc=tuple(roc_points(members, nonmembers)))
