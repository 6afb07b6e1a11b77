"""DP-SGD for LoRA training: per-example clipping + Gaussian noise on the LoRA parameters only.

`DPTraining` implements the loop's `TrainHooks`: it replaces the batch sampler with Poisson
sampling (dp_sampler.py), runs each logical batch one example at a time (forward, backward,
clip that example's gradient to C, add it to a sum), adds N(0, σ²C²) noise to the sum, divides
by the expected batch size and leaves the result in `.grad` for the unchanged optimizer.
Clipping is per sample by construction: no two examples ever share a backward pass. The frozen
base has requires_grad False, so only LoRA parameters get gradients, clipping and noise.
Why not Opacus' GradSampleModule: on the peft UNet some of its per-sample gradients were wrong
while their sum was right (docs/privacy.md, "Implementation choice"). Accounting is Opacus'
(dp_accounting.py). SECURITY: DP noise comes from a generator seeded by the OS CSPRNG,
never from the run seed (a known seed would let anyone subtract the noise). Never logs data.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from secure_trainer.errors import ConfigError, TrainingError
from secure_trainer.privacy.dp_accounting import DPPlan, epsilon_after, make_plan
from secure_trainer.privacy.dp_record import DPRecord, write_record
from secure_trainer.privacy.dp_sampler import (
    PoissonBatch,
    PoissonSampler,
    inclusion_rates,
    private_image_count,
)
from secure_trainer.settings import TrainSettings

# Per-example seeds of the diffusion noise: example j of logical batch n uses n·STRIDE + j.
EXAMPLE_STRIDE = 1 << 20
Warn = Callable[[str], None]


def check_compatible(settings: TrainSettings) -> None:
    """Refuse training options whose interaction with DP-SGD we do not support.

    Raises ConfigError naming the option and the alternative.
    """
    if settings.gradient_accumulation_steps != 1:
        raise ConfigError("--dp needs gradient_accumulation_steps 1: raise train_batch_size "
                          "instead (DP examples run one at a time, so memory does not grow)")
    if settings.mixed_precision == "fp16" or settings.full_fp16 or settings.full_bf16:
        # fp16 loss scaling would clip scaled gradients; low-precision LoRA weights would round
        # the noise away. bf16 autocast keeps float32 LoRA weights and gradients: allowed.
        raise ConfigError("--dp supports mixed_precision no or bf16 (without full_fp16/full_bf16)")
    if settings.resume is not None:
        raise ConfigError("--dp cannot resume a saved state yet (the privacy budget would restart)")


def clip_into(params: Sequence[torch.nn.Parameter], total: Sequence[torch.Tensor],
              max_norm: float) -> float:
    """Add one example's gradient (in `p.grad`), scaled to L2 norm ≤ max_norm over all
    `params`, to `total`; clear `p.grad`; return the unclipped norm.

    The norm is joint over every LoRA parameter (Opacus' flat clipping), so one example's
    contribution to the sum is at most `max_norm` whatever its loss.
    """
    grads = [p.grad for p in params]
    squares = [g.detach().float().pow(2).sum() for g in grads if g is not None]
    norm = float(torch.sqrt(torch.stack(squares).sum())) if squares else 0.0
    factor = min(1.0, max_norm / (norm + 1e-6))
    for grad, acc in zip(grads, total, strict=True):
        if grad is not None:
            acc.add_(grad.detach().float(), alpha=factor)
    for p in params:
        p.grad = None
    return norm


def noisy_mean(total: Sequence[torch.Tensor], *, noise_std: float, expected_batch: float,
               generator: torch.Generator) -> list[torch.Tensor]:
    """(Σ clipped gradients + N(0, noise_std²)) / expected batch size, per tensor.

    Noise is drawn on CPU from `generator` and moved, so it never depends on device RNG state.
    """
    out = []
    for acc in total:
        noise = torch.normal(0.0, noise_std, size=acc.shape, generator=generator)
        out.append((acc + noise.to(acc.device)) / expected_batch)
    return out


def secure_generator() -> torch.Generator:
    """A CPU generator seeded from the OS CSPRNG."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(secrets.randbits(63))
    return gen


class DPTraining:
    """The DP-SGD `TrainHooks` for one run; `record()` gives the figures to publish.

    Construct with the run's settings; `train()` calls `wrap` once, then `run_batch` per
    logical batch, `on_step`/`should_stop` per optimizer step, `extra_metadata` before every
    save and `on_end` after the final one. Raises ConfigError for incompatible settings.
    """

    owns_clipping = True

    def __init__(self, settings: TrainSettings, *, warn: Warn,
                 calibration_steps: int | None = None) -> None:
        """`calibration_steps`: calibrate σ for that many steps instead of the planned ones
        (a smaller value makes the budget end the run early; used by tests and --dp safety)."""
        check_compatible(settings)
        self._settings = settings
        self._warn = warn
        self._calibration_steps = calibration_steps
        self._plan: DPPlan | None = None
        self._params: list[torch.nn.Parameter] = []
        self._expected_batch = 1.0
        self._steps = 0
        self._last_loss = 0.0
        self._exhausted = False
        self._generator = secure_generator()

    @property
    def plan(self) -> DPPlan:
        """The run's privacy plan (after `wrap`). Raises TrainingError before it."""
        if self._plan is None:
            raise TrainingError("DP-SGD was not set up before training")
        return self._plan

    def wrap(self, parts: Any, optimizer: Any, dataset: Any) -> tuple[Any, PoissonSampler]:
        """Fix the privacy plan for this dataset; return the optimizer and the Poisson sampler."""
        from accelerate.state import PartialState

        from secure_trainer.train.setup import make_plan as make_step_plan

        if PartialState().num_processes > 1:
            raise ConfigError("--dp runs on one process (multi-GPU DP-SGD is not supported)")
        steps_plan = make_step_plan(dataset.batches_per_epoch(), self._settings, 1)
        rates = inclusion_rates(dataset, steps_plan.steps_per_epoch)
        self._plan = make_plan(self._settings.dp, num_images=private_image_count(dataset),
                               sample_rate=max(rates), steps=steps_plan.max_train_steps,
                               calibration_steps=self._calibration_steps)
        # Only parameters that get gradients: SDXL's unused CLIP-L last-layer LoRA is frozen
        # (requires_grad False) and must stay at its initial value, noise included.
        self._params = [p for p in parts.params if p.requires_grad]
        self._expected_batch = max(sum(rates), 1e-12)
        return optimizer, PoissonSampler(dataset, rates, steps_plan.steps_per_epoch)

    def run_batch(self, ctx: Any, dataset: Any, batch: PoissonBatch, epoch: int,
                  number: int) -> float:
        """Per-example forward/backward/clip over `batch`, then noise; gradients land in
        `.grad`. Returns the batch's mean loss (the previous one for an empty batch)."""
        from secure_trainer.train.step import batch_loss

        plan = self.plan
        total = [torch.zeros_like(p, dtype=torch.float32) for p in self._params]
        losses: list[float] = []
        for j, example in enumerate(batch.examples):
            loss = batch_loss(ctx, dataset, example, epoch, number * EXAMPLE_STRIDE + j)
            value = float(loss.detach().item())
            if not math.isfinite(value):
                raise TrainingError(f"loss became {value} at step {self._steps + 1} "
                                    "(lower the learning rate)")
            ctx.accelerator.backward(loss)
            clip_into(self._params, total, plan.max_grad_norm)
            losses.append(value)
        # An empty Poisson batch still takes a (pure-noise) step: skipping it would change the
        # sampling distribution the accountant assumes.
        for param, grad in zip(self._params, noisy_mean(
                total, noise_std=plan.noise_multiplier * plan.max_grad_norm,
                expected_batch=self._expected_batch, generator=self._generator), strict=True):
            param.grad = grad.to(param.dtype)
        if losses:
            self._last_loss = sum(losses) / len(losses)
        return self._last_loss

    def on_step(self, step: int, loss: float) -> None:
        """Count optimizer steps (the accountant's k)."""
        del loss
        self._steps = step

    def should_stop(self) -> bool:
        """True once the next step would exceed the target ε (warns once with the figures)."""
        plan = self.plan
        if self._steps < plan.budget_steps or plan.budget_steps >= plan.planned_steps:
            return False
        if not self._exhausted:
            self._exhausted = True
            self._warn(f"DP budget spent: training stopped at step {self._steps} of "
                       f"{plan.planned_steps} (epsilon {self.epsilon():.3f} at the target "
                       f"{plan.target_epsilon:g}); the LoRA is saved")
        return True

    def epsilon(self) -> float:
        """ε spent so far, at the plan's δ."""
        plan = self.plan
        return epsilon_after(plan.accountant, plan.noise_multiplier, plan.sample_rate,
                             self._steps, plan.delta)

    def record(self) -> DPRecord:
        """The DP figures of the LoRA as of now."""
        plan = self.plan
        return DPRecord(epsilon=self.epsilon(), delta=plan.delta,
                        noise_multiplier=plan.noise_multiplier,
                        max_grad_norm=plan.max_grad_norm, sample_rate=plan.sample_rate,
                        steps=self._steps, accountant=plan.accountant,
                        num_images=plan.num_images, target_epsilon=plan.target_epsilon,
                        budget_exhausted=self._exhausted)

    def extra_metadata(self) -> dict[str, str]:
        """`ss_dp_*` keys for the LoRA about to be saved (mode-dependent, see dp_record)."""
        return self.record().to_metadata(self._settings.metadata)

    def on_end(self, lora_path: Path | None) -> None:
        """Write `<lora>.dp.json` next to the final LoRA (main process only).

        Raises TrainingError when it cannot be written.
        """
        if lora_path is None:
            return
        try:
            write_record(lora_path, self.record())
        except OSError:
            raise TrainingError("could not write the DP record next to the LoRA") from None


def hooks_for(settings: TrainSettings, hooks: object | None, warn: Warn) -> object:
    """The hooks a `--dp` run uses: `DPTraining` unless the caller passed DP hooks itself.

    SECURITY: fails closed — hooks that do not clip and noise per example are refused.
    Raises ConfigError.
    """
    if hooks is None:
        return DPTraining(settings, warn=warn)
    if getattr(hooks, "owns_clipping", False) and callable(getattr(hooks, "run_batch", None)):
        return hooks
    raise ConfigError("--dp needs the DP-SGD training hooks, which this entry point does "
                      "not provide")
