"""Privacy accounting of DP-SGD runs: noise calibration, ε after k steps, the budget's last step.

All figures come from Opacus' accountants (RDP by default, PRV on request) for the Poisson-
subsampled Gaussian mechanism; this module only chooses the inputs and translates Opacus'
errors. The inputs are homogeneous (one noise multiplier and one sampling rate for the whole
run), so ε after k steps is a pure function of (σ, q, k, δ) and needs no saved accountant state.
Never sees data; `num_images` is a count and stays out of redacted outputs (see dp_record.py).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

from secure_trainer.errors import ConfigError
from secure_trainer.settings import DPSettings

Accountant = Literal["rdp", "prv"]


@dataclass(frozen=True)
class DPPlan:
    """The privacy parameters of one DP-SGD run, fixed before the first step."""

    noise_multiplier: float
    """σ: Gaussian noise std divided by the clipping norm."""
    max_grad_norm: float
    """C: every example's gradient is clipped to this L2 norm."""
    sample_rate: float
    """q: the highest per-image Poisson inclusion probability of one step (accounted rate)."""
    delta: float
    """δ of the reported (ε, δ) guarantee."""
    accountant: Accountant
    planned_steps: int
    """Optimizer steps the run is configured for."""
    budget_steps: int
    """Last step whose ε stays within the target (== planned_steps without a target)."""
    num_images: int
    """N: distinct private training images (the privacy unit is one image)."""
    target_epsilon: float | None = None


def epsilon_after(accountant: Accountant, noise_multiplier: float, sample_rate: float,
                  steps: int, delta: float) -> float:
    """ε of `steps` Poisson-subsampled Gaussian steps at (σ, q), at `delta` (0 steps ⇒ 0.0).

    Uses the Opacus accountant of that name; raises nothing of its own.
    """
    if steps <= 0:
        return 0.0
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)
    # Homogeneous steps: one history entry is exactly what Opacus records after `steps` calls.
    acc.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about optimal alpha at the range edge
        return float(acc.get_epsilon(delta=delta))


def noise_for_target(accountant: Accountant, target_epsilon: float, delta: float,
                     sample_rate: float, steps: int) -> float:
    """The smallest σ (Opacus' get_noise_multiplier, tolerance 0.01) reaching `target_epsilon`.

    Raises ConfigError when no σ reaches the target (Opacus gives up below a tiny ε).
    """
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                              sample_rate=sample_rate, steps=steps,
                                              accountant=accountant))
    except ValueError:
        raise ConfigError("dp_target_epsilon is too small for this run (raise it, or train "
                          "fewer steps)") from None


def last_step_within(accountant: Accountant, noise_multiplier: float, sample_rate: float,
                     delta: float, target_epsilon: float, max_steps: int) -> int:
    """The largest k ≤ max_steps with ε(k) ≤ target (0 when even one step exceeds it).

    ε grows monotonically with k, so a binary search needs O(log max_steps) accountant calls.
    """
    def within(k: int) -> bool:
        return epsilon_after(accountant, noise_multiplier, sample_rate, k, delta) <= target_epsilon

    if within(max_steps):
        return max_steps
    low, high = 0, max_steps  # within(low) holds, within(high) fails
    while high - low > 1:
        mid = (low + high) // 2
        if within(mid):
            low = mid
        else:
            high = mid
    return low


def default_delta(num_images: int) -> float:
    """δ = 1/N² (N distinct training images): well below the 1/N that would allow leaking one."""
    return 1.0 / float(max(num_images, 2)) ** 2


def make_plan(settings: DPSettings, *, num_images: int, sample_rate: float, steps: int,
              calibration_steps: int | None = None) -> DPPlan:
    """Fix σ, δ and the budget for a run of `steps` steps at Poisson rate `sample_rate`.

    With a target ε, σ is calibrated for `calibration_steps` (default: `steps`) and the budget
    ends at the last step within the target; with --dp_noise_multiplier there is no budget stop.
    Raises ConfigError for δ ≥ 1/N, an unreachable target or a bad sampling rate.
    """
    if not 0.0 < sample_rate <= 1.0:
        raise ConfigError("DP sampling rate must be in (0, 1]")
    delta = settings.delta if settings.delta is not None else default_delta(num_images)
    if delta >= 1.0 / num_images:
        # SECURITY: δ ≥ 1/N would admit mechanisms that publish one whole record.
        raise ConfigError("option 'dp_delta' must be smaller than 1 / (number of training "
                          "images); omit it for the default 1/N²")
    if settings.target_epsilon is not None:
        sigma = noise_for_target(settings.accountant, settings.target_epsilon, delta,
                                 sample_rate, calibration_steps or steps)
        budget = last_step_within(settings.accountant, sigma, sample_rate, delta,
                                  settings.target_epsilon, steps)
        if budget < 1:
            raise ConfigError("dp_target_epsilon is spent before the first step")
    elif settings.noise_multiplier is not None:
        sigma, budget = settings.noise_multiplier, steps
    else:
        raise ConfigError("--dp needs exactly one of --dp_target_epsilon or --dp_noise_multiplier")
    if not math.isfinite(sigma) or sigma <= 0:
        raise ConfigError("DP noise multiplier must be positive")
    return DPPlan(noise_multiplier=sigma, max_grad_norm=settings.max_grad_norm,
                  sample_rate=sample_rate, delta=delta, accountant=settings.accountant,
                  planned_steps=steps, budget_steps=budget, num_images=num_images,
                  target_epsilon=settings.target_epsilon)
