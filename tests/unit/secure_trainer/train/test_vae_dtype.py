"""The VAE's compute dtype follows sd-scripts (weight dtype unless --no_half_vae) with two float32
exceptions: SDXL and fp16."""

from __future__ import annotations

from pathlib import Path

import torch

from secure_trainer.settings import TrainSettings
from secure_trainer.train.setup import vae_dtype


def _settings(**kw: object) -> TrainSettings:
    return TrainSettings(pretrained_model_name_or_path=Path("m"), datasets=(), output_dir=Path("o"), **kw)  # type: ignore[arg-type]


def test_sd1_bf16_encodes_in_bf16_unless_no_half_vae() -> None:
    assert vae_dtype(_settings(), torch.bfloat16, sdxl=False) is torch.bfloat16
    assert vae_dtype(_settings(no_half_vae=True), torch.bfloat16, sdxl=False) is torch.float32


def test_sdxl_fp16_and_fp32_encode_in_float32() -> None:
    assert vae_dtype(_settings(), torch.bfloat16, sdxl=True) is torch.float32
    assert vae_dtype(_settings(), torch.float16, sdxl=False) is torch.float32
    assert vae_dtype(_settings(), torch.float32, sdxl=False) is torch.float32
