"""User-level DP-SGD steps: per-unit clipped gradients, Gaussian noise, Opacus accounting.

One step: Poisson-sample units (units.py); for each sampled unit, back-propagate the sum of
its examples' losses (each example's mean token loss), so the unit's gradient is the sum of its
examples' gradients; clip that sum to C jointly over all LoRA parameters (privacy/dp.py
`clip_into`); add N(0, σ²C²) to the sum of clipped unit gradients and divide by the expected
batch size q·N. Units never share a backward pass, so no unit's gradient leaks into another's
clip. Accounting: Opacus via privacy/dp_accounting.py at q and σ, charged per step; the run
stops at the last step within the target ε. SECURITY: noise and sampling use the OS CSPRNG,
never the run seed. Never logs data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import torch

from secure_trainer.llm.batches import collate, per_example_loss
from secure_trainer.llm.config import LlmTrainConfig
from secure_trainer.llm.template import Encoded
from secure_trainer.llm.units import poisson_sample, sample_rate
from secure_trainer.privacy.dp import clip_into, noisy_mean, secure_generator
from secure_trainer.privacy.dp_accounting import DPPlan, epsilon_after, make_plan
from secure_trainer.privacy.dp_record import DPRecord
from secure_trainer.settings import DPSettings

# A unit with many examples is back-propagated in chunks of this many (the gradients add up
# in .grad before the unit is clipped), so memory does not grow with a subject's record count.
UNIT_CHUNK = 8


def plan_for(config: LlmTrainConfig, *, units: int, steps: int) -> DPPlan:
    """σ and the budget for `steps` steps over `units` units at q = B/N.

    Raises ConfigError (from dp_accounting) for δ ≥ 1/N or an unreachable target.
    """
    settings = DPSettings(enabled=True, target_epsilon=config.target_epsilon,
                          delta=config.delta, max_grad_norm=config.max_grad_norm,
                          noise_multiplier=config.noise_multiplier,
                          accountant=config.accountant)
    rate = sample_rate(config.per_device_train_batch_size, units)
    return make_plan(settings, num_images=units, sample_rate=rate, steps=steps)


def unit_gradient_into(model: torch.nn.Module, params: Sequence[torch.nn.Parameter],
                       examples: Sequence[Encoded], pad_id: int, total: Sequence[torch.Tensor],
                       max_norm: float,
                       autocast: Callable[[], AbstractContextManager[object]],
                       chunk: int = UNIT_CHUNK) -> float:
    """Add one unit's clipped gradient (Σ over its examples of ∇ mean token loss) to `total`.

    Returns the unit's summed loss (for progress display only).
    """
    loss_sum = 0.0
    for start in range(0, len(examples), chunk):
        batch = collate(examples[start:start + chunk], pad_id)
        with autocast():
            losses = per_example_loss(model, batch)
        losses.sum().backward()
        loss_sum += float(losses.detach().sum())
    clip_into(params, total, max_norm)
    return loss_sum


class UnitDPSGD:
    """Computes each optimizer step's noisy gradient and tracks ε; one instance per run."""

    def __init__(self, plan: DPPlan, units: list[list[int]], *, unit_name: str,
                 rng: random.Random | None = None) -> None:
        """`rng` (sampling) defaults to the OS CSPRNG; tests may pass a seeded one."""
        self.plan = plan
        self._units = units
        self._unit_name = unit_name
        self._rng = rng or random.SystemRandom()
        self._generator = secure_generator()
        self.steps = 0

    def step_gradient(self, model: torch.nn.Module, params: Sequence[torch.nn.Parameter],
                      encoded: Sequence[Encoded], pad_id: int,
                      autocast: Callable[[], AbstractContextManager[object]]) -> float:
        """Sample units, leave the noisy mean of clipped unit gradients in `p.grad`.

        Returns the mean example loss of the sampled units (nan when none was sampled).
        """
        total = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        chosen = poisson_sample(len(self._units), self.plan.sample_rate, self._rng)
        loss_sum, examples = 0.0, 0
        for unit in chosen:
            members = [encoded[i] for i in self._units[unit]]
            loss_sum += unit_gradient_into(model, params, members, pad_id, total,
                                           self.plan.max_grad_norm, autocast)
            examples += len(members)
        expected = self.plan.sample_rate * len(self._units)
        noisy = noisy_mean(total, noise_std=self.plan.noise_multiplier * self.plan.max_grad_norm,
                           expected_batch=expected, generator=self._generator)
        for p, grad in zip(params, noisy, strict=True):
            p.grad = grad.to(p.dtype)
        self.steps += 1
        return loss_sum / examples if examples else float("nan")

    def exhausted(self) -> bool:
        """True when one more step would exceed the target ε."""
        return self.steps >= self.plan.budget_steps

    def epsilon(self) -> float:
        """ε spent so far."""
        return epsilon_after(self.plan.accountant, self.plan.noise_multiplier,
                             self.plan.sample_rate, self.steps, self.plan.delta)

    def record(self) -> DPRecord:
        """The figures to publish for the adapter as saved now."""
        return DPRecord(epsilon=self.epsilon(), delta=self.plan.delta,
                        noise_multiplier=self.plan.noise_multiplier,
                        max_grad_norm=self.plan.max_grad_norm,
                        sample_rate=self.plan.sample_rate, steps=self.steps,
                        accountant=self.plan.accountant, num_images=self.plan.num_images,
                        target_epsilon=self.plan.target_epsilon,
                        budget_exhausted=self.steps < self.plan.planned_steps,
                        privacy_unit=self._unit_name)
