"""Root recomputes ε from the trainer's DP record and refuses a claim that does not hold."""

from __future__ import annotations

from dataclasses import replace

import pytest

from entrypoint.errors import TrainingError
from entrypoint.run.dp_check import check_dp_record
from secure_trainer.privacy.dp_accounting import epsilon_after
from secure_trainer.privacy.dp_record import DPRecord
from secure_trainer.settings import DPSettings

SETTINGS = DPSettings(enabled=True, noise_multiplier=1.1, max_grad_norm=1.0)


def _honest(steps: int = 40) -> DPRecord:
    eps = epsilon_after("rdp", 1.1, 0.05, steps, 1e-5)
    return DPRecord(epsilon=eps, delta=1e-5, noise_multiplier=1.1, max_grad_norm=1.0,
                    sample_rate=0.05, steps=steps, accountant="rdp", num_images=80,
                    target_epsilon=None, budget_exhausted=False)


def test_honest_record_passes_with_roots_epsilon() -> None:
    record = _honest()
    checked = check_dp_record(record, SETTINGS)
    assert checked.epsilon == pytest.approx(record.epsilon, rel=1e-9) and checked.epsilon > 0


@pytest.mark.parametrize("change", [
    {"epsilon": 0.5},                 # understated ε: the lie this check exists for
    {"steps": 10},                    # ε of 40 steps claimed for 10 (mismatch)
    {"sample_rate": 0.01},            # q lowered after the fact
    {"noise_multiplier": 3.0},        # σ differs from the run's settings
    {"max_grad_norm": 0.1},           # C differs from the run's settings
    {"accountant": "prv"},            # another accountant than the run's
    {"delta": float("nan")},          # out of range
    {"sample_rate": 1.5},
])
def test_a_claim_that_does_not_hold_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(TrainingError) as err:
        check_dp_record(replace(_honest(), **change), SETTINGS)  # type: ignore[arg-type]
    assert "not sealed" in str(err.value)
    assert err.value.exit_code == 7


def test_target_and_delta_from_settings_are_enforced() -> None:
    record = _honest()
    with pytest.raises(TrainingError):
        check_dp_record(record, replace(SETTINGS, target_epsilon=record.epsilon / 2))
    with pytest.raises(TrainingError):
        check_dp_record(record, replace(SETTINGS, delta=1e-6))
    assert check_dp_record(record, replace(SETTINGS, delta=1e-5,
                                           target_epsilon=record.epsilon * 1.01))
