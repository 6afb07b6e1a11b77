"""Root's own check of the trainer's DP claim before a run is sealed.

The `<lora>.dp.json` record is written by the unprivileged (hostile) trainer. The supervisor
recomputes ε from the recorded σ, q, steps and δ with the same accountant, checks the inputs
against the run's own DP settings, and refuses to seal (TrainingError, exit 7) when anything
disagrees, so the ε in the manifest and audit log is one root computed.
Must never: trust the record's ε, or put a figure of the record in an error message.
"""

from __future__ import annotations

import math
from dataclasses import replace

from entrypoint.errors import TrainingError
from secure_trainer.privacy.dp_accounting import epsilon_after
from secure_trainer.privacy.dp_record import DPRecord
from secure_trainer.settings import DPSettings

# The audit log records the guarantee; the manifest (inside the workspace) keeps the full record.
DP_AUDIT_FIELDS = ("epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate", "steps",
                   "accountant", "target_epsilon", "budget_exhausted")

# Opacus is deterministic for the same inputs; the margin only absorbs float formatting.
_REL_TOL = 1e-6
_ACCOUNTANTS = ("rdp", "prv")


def _finite_positive(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=1e-12)


def check_dp_record(record: DPRecord, dp: DPSettings) -> DPRecord:
    """The record with ε recomputed by root; raises TrainingError when the trainer's claim
    (ε, or an input the run's settings fix) does not hold.
    """
    if record.accountant not in _ACCOUNTANTS or record.accountant != dp.accountant:
        raise TrainingError("the DP record names another accountant than the run's; not sealed")
    if not (_finite_positive(record.noise_multiplier, record.max_grad_norm, record.delta)
            and 0 < record.sample_rate <= 1 and record.delta < 1
            and isinstance(record.steps, int) and record.steps >= 0):
        raise TrainingError("the DP record's parameters are out of range; not sealed")
    if not _same(record.max_grad_norm, dp.max_grad_norm):
        raise TrainingError("the DP record's clipping norm differs from the run's; not sealed")
    if dp.noise_multiplier is not None and not _same(record.noise_multiplier,
                                                     dp.noise_multiplier):
        raise TrainingError("the DP record's noise multiplier differs from the run's; not sealed")
    if dp.delta is not None and not _same(record.delta, dp.delta):
        raise TrainingError("the DP record's delta differs from the run's; not sealed")
    try:
        epsilon = epsilon_after(record.accountant, record.noise_multiplier, record.sample_rate,
                                record.steps, record.delta)
    except (ValueError, ArithmeticError, RuntimeError):
        raise TrainingError("epsilon could not be recomputed from the DP record; not sealed") \
            from None
    if not math.isfinite(epsilon) or not _same(epsilon, record.epsilon):
        raise TrainingError("the trainer's epsilon differs from the accountant's recomputation; "
                            "not sealed")
    if dp.target_epsilon is not None and epsilon > dp.target_epsilon * (1 + _REL_TOL):
        raise TrainingError("the recomputed epsilon exceeds the run's target; not sealed")
    return replace(record, epsilon=epsilon)
