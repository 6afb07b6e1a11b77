"""The training loop on the tiny model: the loss falls, the output is a redacted Kohya LoRA,
TensorBoard gets loss/lr scalars only, and the Kohya objective/optimisation flags all run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import tfevents
import torch
from safetensors import safe_open
from train_support import base_args, private_strings, write_dataset_config

from secure_trainer.kohya.config import parse_train_args
from secure_trainer.kohya.export import KEY_RE
from secure_trainer.train.loop import train

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("one_thread")]



def _settings(argv: list[str]) -> Any:
    return parse_train_args(argv, warn=lambda _m: None)


def test_loss_falls_and_output_is_redacted_kohya_lora(tiny_model: Any, tiny_dataset: Path,
                                                      tmp_path: Path) -> None:
    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml")
    out, logs = tmp_path / "out", tmp_path / "logs"
    settings = _settings(base_args(
        tiny_model.diffusers_dir, cfg, out, "--max_train_steps", "30", "--learning_rate", "1e-2",
        "--cache_latents", "--save_precision", "fp16", "--output_name", "mylora",
        "--logging_dir", str(logs)))
    result = train(settings)

    assert result.steps == 30 and len(result.losses) == 30
    first, last = result.losses[:8], result.losses[-8:]
    assert sum(last) / 8 < 0.85 * (sum(first) / 8), result.losses
    assert result.lora_path == out / "mylora.safetensors" and result.lora_path.is_file()
    assert sorted(p.name for p in out.iterdir()) == ["mylora.safetensors"]  # no temp files left

    with safe_open(str(result.lora_path), "pt") as fh:
        keys = list(fh.keys())
        metadata = fh.metadata()
        dtypes = {fh.get_tensor(k).dtype for k in keys}
        ups = [fh.get_tensor(k) for k in keys if k.endswith("lora_up.weight")]
    assert keys and all(KEY_RE.match(k) for k in keys)
    assert any(k.startswith("lora_unet_") for k in keys) and any(k.startswith("lora_te_") for k in keys)
    assert dtypes == {torch.float16}
    assert any(u.abs().sum() > 0 for u in ups)  # it trained
    header = json.dumps(metadata)
    leaked = [s for s in private_strings(tiny_dataset) if s.lower() in header.lower()]
    assert leaked == []
    assert str(tiny_dataset) not in header and "mylora" not in header

    runs = list(logs.iterdir())
    assert len(runs) == 1
    found, other = tfevents.scalars(runs[0])
    assert set(found) == {"loss/current", "loss/average", "lr/unet", "lr/textencoder"}
    steps = [step for step, _ in found["loss/current"]]
    assert len(steps) == 30 and steps == sorted(set(steps))
    assert all(math.isfinite(v) for _, v in found["loss/current"])
    assert other == set()


def test_kohya_objective_and_optimisation_flags(tiny_model: Any, tiny_dataset: Path,
                                                tmp_path: Path) -> None:
    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml", flip_aug=True)
    out = tmp_path / "out"
    settings = _settings(base_args(
        tiny_model.diffusers_dir, cfg, out, "--max_train_epochs", "2", "--learning_rate", "1e-3",
        "--text_encoder_lr", "0", "--v_parameterization", "--min_snr_gamma", "5",
        "--noise_offset", "0.05", "--clip_skip", "2", "--max_token_length", "150",
        "--gradient_accumulation_steps", "2", "--gradient_checkpointing", "--mixed_precision", "bf16",
        "--optimizer_type", "SGDNesterov", "--lr_scheduler", "cosine_with_restarts",
        "--lr_warmup_steps", "0.25", "--min_timestep", "100", "--max_timestep", "900",
        "--save_every_n_epochs", "1"))
    result = train(settings)

    # 3 batches/epoch, accumulation 2 ⇒ 2 optimizer steps per epoch.
    assert result.steps == 4 and result.epochs == 2
    assert all(math.isfinite(x) for x in result.losses)
    assert sorted(p.name for p in out.iterdir()) == ["last-000001.safetensors", "last.safetensors"]
    with safe_open(str(out / "last.safetensors"), "pt") as fh:
        names = list(fh.keys())
        te_up = [fh.get_tensor(k) for k in names if k.startswith("lora_te_") and "lora_up" in k]
        unet_up = [fh.get_tensor(k) for k in names if k.startswith("lora_unet_") and "lora_up" in k]
        assert fh.metadata()["ss_base_model_version"] == "sd_v1_v"
    # text_encoder_lr 0: the TE group is not optimised, its up weights stay at their zero init.
    assert te_up and all(torch.count_nonzero(t) == 0 for t in te_up)
    assert any(torch.count_nonzero(t) > 0 for t in unet_up)


def test_latent_cache_holds_each_image_and_its_flip_in_memory(tiny_model: Any, tiny_dataset: Path,
                                                              tmp_path: Path) -> None:
    from secure_trainer.data.latent_cache import LatentCache
    from secure_trainer.models.loading import load_base_model
    from secure_trainer.train.setup import build_dataset, fill_cache

    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml", flip_aug=True)
    settings = _settings(base_args(tiny_model.diffusers_dir, cfg, tmp_path / "out"))
    dataset = build_dataset(settings, 7, lambda _m: None)
    vae = load_base_model(tiny_model.diffusers_dir).vae
    before = {p for p in tiny_dataset.rglob("*")}
    cache, again = LatentCache(), LatentCache()
    fill_cache(cache, dataset, vae, 0.18215, seed=7)
    fill_cache(again, dataset, vae, 0.18215, seed=7)
    n = len(dataset.records)
    assert len(cache) == 2 * n and cache.nbytes > 0
    plain = cache.batch([0], [False])
    flipped = cache.batch([0], [True])
    assert plain is not None and flipped is not None and plain.shape == (1, 4, 8, 8)
    assert not torch.equal(plain, flipped)
    assert torch.equal(plain, again.batch([0], [False]))  # seeded per image: reproducible
    assert {p for p in tiny_dataset.rglob("*")} == before  # nothing written beside the images
