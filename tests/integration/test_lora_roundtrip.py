"""A LoRA written by `secure-trainer train` loads in diffusers (`load_lora_weights`) on both the
diffusers-folder base and the single-file base, changes the image, and `fuse_lora` matches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def trained_lora(tiny_model: Any, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lora-out")
    proc = subprocess.run(
        [sys.executable, "-m", "entrypoint.cli", "train",
         "--pretrained_model_name_or_path", str(tiny_model.diffusers_dir),
         "--train_data_dir", str(tiny_dataset), "--caption_extension", ".txt",
         "--resolution", "64", "--max_train_steps", "4", "--network_dim", "4",
         "--network_alpha", "4", "--learning_rate", "5e-2", "--seed", "3",
         "--output_dir", str(out), "--output_name", "rt"],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                          "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "rt.safetensors"


def _render(pipe: Any) -> np.ndarray:
    gen = torch.Generator().manual_seed(0)
    image = pipe("a red circle", num_inference_steps=2, height=64, width=64, guidance_scale=1.0,
                 generator=gen, output_type="np").images[0]
    return np.asarray(image, dtype=np.float32)


def _check(pipe: Any, lora: Path) -> None:
    pipe.set_progress_bar_config(disable=True)
    before = _render(pipe)
    pipe.load_lora_weights(str(lora))
    with_lora = _render(pipe)
    assert np.abs(with_lora - before).max() > 1e-4, "the LoRA did not change the image"
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    fused = _render(pipe)
    np.testing.assert_allclose(fused, with_lora, atol=2e-3)


def test_loads_in_diffusers_from_diffusers_folder(tiny_model: Any, trained_lora: Path) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_model.diffusers_dir, safety_checker=None, requires_safety_checker=False)
    _check(pipe, trained_lora)


def test_loads_in_diffusers_on_single_file_base(tiny_model: Any, trained_lora: Path) -> None:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from secure_trainer.models.loading import load_base_model

    base = load_base_model(tiny_model.single_file)
    assert base.model_format == "single-file-safetensors"
    pipe = StableDiffusionPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
        scheduler=DDIMScheduler.from_config(base.noise_scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    _check(pipe, trained_lora)
