"""The diffusion training objective: noise, timesteps, targets, min-SNR weighting and the loss.

Follows Kohya's SD recipe (kohya-compat §4 "Noise/loss"): integer timesteps uniform in
[min_timestep, max_timestep), epsilon or v-prediction target, per-sample MSE mean times the
per-sample loss weight, min-SNR-γ weights, noise offset broadcast over H×W. Every random draw
takes an explicit `torch.Generator`, so a run is reproducible and resumable bit for bit.
Never touches global RNG state. `scheduler` arguments are diffusers DDPMSchedulers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from secure_trainer.errors import ConfigError


@dataclass(frozen=True)
class NoiseSettings:
    """The objective's knobs, taken from TrainSettings."""

    min_timestep: int = 0
    max_timestep: int = 1000
    noise_offset: float | None = None
    min_snr_gamma: float | None = None
    v_parameterization: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.min_timestep < self.max_timestep <= 1000:
            raise ConfigError("min_timestep/max_timestep must satisfy 0 <= min < max <= 1000")
        if self.min_snr_gamma is not None and self.min_snr_gamma <= 0:
            raise ConfigError("min_snr_gamma must be > 0")
        if self.noise_offset is not None and self.noise_offset < 0:
            raise ConfigError("noise_offset must be >= 0")


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (run seed, step, rank, ...). Pure function."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(
        2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator_for(*parts: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator seeded from `derive_seed(*parts)`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(*parts))
    return gen


def sample_noise(latents: torch.Tensor, settings: NoiseSettings,
                 generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise shaped like `latents`, plus `noise_offset`·N(0,1) per sample and channel.

    The offset term is drawn with shape [B, C, 1, 1] and broadcast over H×W (Kohya's
    apply_noise_offset). Drawn on CPU from `generator` then moved, so CPU and GPU runs with
    the same seed see the same noise.
    """
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    if settings.noise_offset:
        offset = torch.randn((latents.shape[0], latents.shape[1], 1, 1), generator=generator,
                             dtype=torch.float32)
        noise = noise + settings.noise_offset * offset
    return noise.to(device=latents.device, dtype=latents.dtype)


def sample_timesteps(batch_size: int, settings: NoiseSettings,
                     generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """Integer timesteps uniform in [min_timestep, max_timestep), int64, on `device`."""
    steps = torch.randint(settings.min_timestep, settings.max_timestep, (batch_size,),
                          generator=generator, dtype=torch.int64)
    return steps.to(device)


def training_target(scheduler: Any, latents: torch.Tensor, noise: torch.Tensor,
                    timesteps: torch.Tensor, *, v_parameterization: bool) -> torch.Tensor:
    """The UNet's regression target: the noise (epsilon) or the velocity (v-prediction)."""
    if v_parameterization:
        velocity: torch.Tensor = scheduler.get_velocity(latents, noise, timesteps)
        return velocity
    return noise


def snr(scheduler: Any, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t) at each timestep (float32, on the timesteps' device)."""
    alphas_cumprod: torch.Tensor = scheduler.alphas_cumprod.to(device=timesteps.device,
                                                                dtype=torch.float32)
    a = alphas_cumprod[timesteps]
    return a / (1.0 - a)


def min_snr_weights(scheduler: Any, timesteps: torch.Tensor, gamma: float, *,
                    v_parameterization: bool) -> torch.Tensor:
    """Kohya's min-SNR-γ weight: min(SNR, γ)/SNR for epsilon, min(SNR, γ)/(SNR+1) for v."""
    ratio = snr(scheduler, timesteps)
    clipped = torch.minimum(ratio, torch.full_like(ratio, gamma))
    return clipped / (ratio + 1.0) if v_parameterization else clipped / ratio


def diffusion_loss(model_pred: torch.Tensor, target: torch.Tensor, loss_weights: torch.Tensor,
                   timesteps: torch.Tensor, scheduler: Any,
                   settings: NoiseSettings) -> torch.Tensor:
    """Scalar loss: per-sample MSE mean × loss weight (× min-SNR weight), then batch mean.

    Computed in float32 whatever the autocast dtype (mixed precision must not round the loss).
    """
    per_elem = torch.nn.functional.mse_loss(model_pred.float(), target.float(), reduction="none")
    per_sample = per_elem.mean(dim=tuple(range(1, per_elem.ndim)))
    per_sample = per_sample * loss_weights.to(per_sample.device, torch.float32)
    if settings.min_snr_gamma:
        per_sample = per_sample * min_snr_weights(
            scheduler, timesteps, settings.min_snr_gamma,
            v_parameterization=settings.v_parameterization)
    return per_sample.mean()


def noisy_inputs(scheduler: Any, latents: torch.Tensor, settings: NoiseSettings,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw noise and timesteps; return (noisy_latents, timesteps, target)."""
    noise = sample_noise(latents, settings, generator)
    timesteps = sample_timesteps(latents.shape[0], settings, generator, latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = training_target(scheduler, latents, noise, timesteps,
                             v_parameterization=settings.v_parameterization)
    return noisy, timesteps, target
