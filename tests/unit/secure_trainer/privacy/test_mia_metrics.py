"""Membership-inference metrics: AUC = Mann–Whitney, low-FPR TPR, bootstrap CIs, the ROC PNG."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from PIL import Image
from scipy.stats import mannwhitneyu

from secure_trainer.errors import ConfigError
from secure_trainer.privacy.mia import MiaSettings, timestep_grid
from secure_trainer.privacy.mia_metrics import (
    attack_metrics,
    auc,
    bootstrap,
    roc_points,
    tpr_at_fpr,
)
from secure_trainer.privacy.mia_plot import draw_roc


def test_auc_extremes_and_ties() -> None:
    assert auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert auc([1.0, 1.0], [1.0, 1.0]) == 0.5


def test_auc_is_the_mann_whitney_statistic() -> None:
    rng = random.Random(1)
    members = [rng.gauss(0.5, 1) for _ in range(40)]
    holdout = [rng.gauss(0.0, 1) for _ in range(35)] + members[:3]  # with ties
    u = mannwhitneyu(members, holdout).statistic
    assert auc(members, holdout) == pytest.approx(u / (len(members) * len(holdout)))


def test_tpr_at_low_fpr() -> None:
    holdout = [float(i) for i in range(10)]  # max 9
    members = [9.5, 10.0, 3.0, 8.5]
    # 10 non-members: FPR ≤ 1 % means above every non-member → 2 of 4 members.
    assert tpr_at_fpr(members, holdout, 0.01) == 0.5
    assert tpr_at_fpr(members, holdout, 0.1) == 0.75  # one non-member (9) allowed above t
    points = roc_points(members, holdout)
    assert points[0] == (0.0, 0.0) and points[-1] == (1.0, 1.0)
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(points))


def test_bootstrap_ci_brackets_the_value_and_is_seeded() -> None:
    rng = random.Random(2)
    members = [rng.gauss(1, 1) for _ in range(30)]
    holdout = [rng.gauss(0, 1) for _ in range(30)]
    first = bootstrap(members, holdout, auc, rounds=300, seed=5)
    assert first.low <= first.value <= first.high and first.high - first.low > 0.05
    assert bootstrap(members, holdout, auc, rounds=300, seed=5) == first
    same = [rng.gauss(0, 1) for _ in range(30)]
    null = bootstrap(same, holdout, auc, rounds=300, seed=5)
    assert null.low < 0.5 < null.high


def test_roc_png_is_written(tmp_path: Path) -> None:
    metrics = attack_metrics([2.0, 3.0, 0.5], [0.0, 1.0, 0.2], rounds=100)
    path = draw_roc(metrics.roc, tmp_path / "roc.png", title="AUC")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (480, 480)
        assert len(image.getcolors(480 * 480) or []) > 2  # something was drawn


def test_settings_validation_and_grid() -> None:
    assert timestep_grid(4) == (125, 375, 625, 875)
    for kw in ({"timesteps": 0}, {"noises": 0}, {"bootstrap": 10}, {"resolution": 60}):
        with pytest.raises(ConfigError):
            MiaSettings(lora=Path("a"), base=Path("b"), members=Path("c"), holdout=Path("d"),
                        **kw)  # type: ignore[arg-type]
