"""The diffusion objective: timesteps range, noise offset, targets, min-SNR weights, loss."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from secure_trainer.errors import ConfigError
from secure_trainer.train.noise import (
    NoiseSettings,
    derive_seed,
    diffusion_loss,
    generator_for,
    min_snr_weights,
    noisy_inputs,
    sample_noise,
    sample_timesteps,
    snr,
)


def _scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", clip_sample=False)


def test_timesteps_cover_half_open_range() -> None:
    settings = NoiseSettings(min_timestep=100, max_timestep=103)
    steps = sample_timesteps(5000, settings, generator_for(1), "cpu")
    assert steps.dtype == torch.int64
    assert set(steps.tolist()) == {100, 101, 102}


def test_bad_timestep_range_is_config_error() -> None:
    with pytest.raises(ConfigError):
        NoiseSettings(min_timestep=500, max_timestep=500)
    with pytest.raises(ConfigError):
        NoiseSettings(max_timestep=1001)


def test_generators_are_reproducible_and_distinct() -> None:
    assert derive_seed(1, 2) == derive_seed(1, 2)
    assert derive_seed(1, 2) != derive_seed(2, 1)
    a = torch.randn(4, generator=generator_for(7, 3))
    b = torch.randn(4, generator=generator_for(7, 3))
    c = torch.randn(4, generator=generator_for(7, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_noise_offset_is_constant_over_spatial_dims() -> None:
    latents = torch.zeros(2, 4, 16, 16)
    plain = sample_noise(latents, NoiseSettings(), generator_for(5))
    offset = sample_noise(latents, NoiseSettings(noise_offset=10.0), generator_for(5))
    diff = offset - plain  # same generator ⇒ same base noise; the rest is the offset term
    assert torch.allclose(diff, diff[:, :, :1, :1].expand_as(diff))
    assert diff.abs().mean() > 1.0


def test_targets_epsilon_and_velocity() -> None:
    sched = _scheduler()
    latents = torch.randn(3, 4, 8, 8, generator=generator_for(1))
    noisy_e, t_e, target_e = noisy_inputs(sched, latents, NoiseSettings(), generator_for(2))
    noisy_v, t_v, target_v = noisy_inputs(sched, latents, NoiseSettings(v_parameterization=True),
                                          generator_for(2))
    assert torch.equal(t_e, t_v) and torch.equal(noisy_e, noisy_v)
    noise = target_e
    a = sched.alphas_cumprod[t_e].view(-1, 1, 1, 1)
    assert torch.allclose(noisy_e, a.sqrt() * latents + (1 - a).sqrt() * noise, atol=1e-5)
    assert torch.allclose(target_v, a.sqrt() * noise - (1 - a).sqrt() * latents, atol=1e-5)


def test_min_snr_weights_follow_kohya_formula() -> None:
    sched = _scheduler()
    t = torch.tensor([0, 50, 500, 999])
    ratio = snr(sched, t)
    eps_w = min_snr_weights(sched, t, 5.0, v_parameterization=False)
    v_w = min_snr_weights(sched, t, 5.0, v_parameterization=True)
    assert torch.allclose(eps_w, torch.clamp(ratio, max=5.0) / ratio)
    assert torch.allclose(v_w, torch.clamp(ratio, max=5.0) / (ratio + 1))
    assert eps_w[0] < 1.0 and eps_w[-1] == pytest.approx(1.0)


def test_loss_weights_and_snr_scale_the_mse() -> None:
    sched = _scheduler()
    pred = torch.ones(2, 4, 2, 2)
    target = torch.zeros(2, 4, 2, 2)
    t = torch.tensor([999, 999])
    base = diffusion_loss(pred, target, torch.ones(2), t, sched, NoiseSettings())
    assert base.item() == pytest.approx(1.0)
    weighted = diffusion_loss(pred, target, torch.tensor([1.0, 0.5]), t, sched, NoiseSettings())
    assert weighted.item() == pytest.approx(0.75)
    t_low = torch.tensor([10, 10])
    snr_loss = diffusion_loss(pred, target, torch.ones(2), t_low, sched,
                              NoiseSettings(min_snr_gamma=1.0))
    assert snr_loss.item() == pytest.approx((1.0 / snr(sched, t_low)[0]).item(), rel=1e-5)
