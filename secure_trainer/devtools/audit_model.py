"""A tiny-model variant for membership-audit fixtures: a VAE whose latents behave like SD's.

The random tiny VAE has a posterior std ≈ 1 and scaled latents of std ≈ 0.05, so image content
drowns in VAE sampling noise and nothing can be memorised per image. Real SD VAEs have a narrow
posterior and (scaled) latents of std ≈ 1. `calibrate_vae` rescales the mean rows of the VAE's
`quant_conv` and pins its log-variance to the minimum, in a copy of the diffusers folder.
Writes only below `out`; never touches the source folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

LOGVAR_MIN = -30.0  # diffusers clamps log-variance to [-30, 20]


def calibrate_vae(diffusers_dir: Path, out: Path, *, probe_images: int = 8) -> Path:
    """Copy the diffusers folder to `out` with a calibrated VAE; return `out`.

    Raises OSError when `out` cannot be written.
    """
    from diffusers import AutoencoderKL

    from secure_trainer.models.loading import SD1_VAE_SCALE

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(diffusers_dir, out)
    vae = AutoencoderKL.from_pretrained(str(out / "vae"))
    channels = vae.config.latent_channels
    gen = torch.Generator().manual_seed(0)
    images = torch.rand((probe_images, 3, 64, 64), generator=gen) * 2 - 1
    with torch.no_grad():
        spread = float(vae.encode(images).latent_dist.mean.std())
        gain = 1.0 / (spread * SD1_VAE_SCALE)
        conv = vae.quant_conv
        conv.weight[:channels] *= gain
        conv.bias[:channels] *= gain
        conv.weight[channels:] = 0.0
        conv.bias[channels:] = LOGVAR_MIN
    vae.save_pretrained(str(out / "vae"), safe_serialization=True)
    return out
