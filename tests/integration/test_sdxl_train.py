"""`secure-trainer train --sdxl` on the tiny SDXL model: the file sd-scripts writes, and consumers.

The LoRA's key set equals sd-scripts' SDXL reference names (tiny widths, real nesting), its
metadata says SDXL, and diffusers' StableDiffusionXLPipeline loads it on the folder base and on
the single-file base, the image changes, and fuse_lora matches. A UNet-only run with Kohya's
low-memory recipe (cached latents and text-encoder outputs, gradient checkpointing) trains from
the single-file base. --sdxl must agree with the model (exit 2 either way).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.integration.train_support import REPO_ROOT, private_strings, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
REFERENCE = REPO_ROOT / "tests" / "data" / "kohya-sdxl-lora-dim16.json"


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from secure_trainer.devtools.tiny_sdxl import make_tiny_sdxl

    return make_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


def _train(model: Path, dataset: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("train", "--sdxl", "--pretrained_model_name_or_path", str(model),
                   "--train_data_dir", str(dataset), "--caption_extension", ".txt",
                   "--resolution", "64", "--max_train_steps", "3", "--network_dim", "4",
                   "--network_alpha", "4", "--learning_rate", "5e-2", "--seed", "3",
                   "--output_dir", str(out), "--output_name", "sx", *extra, timeout=600)


@pytest.fixture(scope="module")
def trained(tiny_sdxl: Any, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdxl-out")
    proc = _train(tiny_sdxl.diffusers_dir, tiny_dataset, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "sx.safetensors"


@pytest.fixture(scope="module")
def trained_unet_only(tiny_sdxl: Any, tiny_dataset: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdxl-unet-out")
    proc = _train(tiny_sdxl.single_file, tiny_dataset, out, "--network_train_unet_only",
                  "--cache_text_encoder_outputs", "--cache_latents", "--gradient_checkpointing",
                  "--mixed_precision", "bf16", "--max_token_length", "150")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "sx.safetensors"


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata())  # noqa: SIM118


def test_key_set_equals_sd_scripts_sdxl_reference(trained: Path, tiny_dataset: Path) -> None:
    tensors, meta = _read(trained)
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))["tensors"]
    assert set(tensors) == set(reference)  # 2958 names: lora_unet (LDM blocks), lora_te1, lora_te2
    assert tensors["lora_unet_input_blocks_4_1_proj_in.lora_down.weight"].shape[0] == 4
    assert tensors["lora_te2_text_model_encoder_layers_31_mlp_fc2.alpha"].item() == 4.0
    # Trained: UNet and both text encoders moved away from lora_up = 0.
    for key in ("lora_unet_output_blocks_0_1_transformer_blocks_9_attn2_to_k.lora_up.weight",
                "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight",
                "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"):
        assert tensors[key].abs().max() > 0, key
    # CLIP-L's last layer is never used (penultimate states): its LoRA stays at lora_up = 0,
    # as in files sd-scripts writes.
    assert tensors["lora_te1_text_model_encoder_layers_11_mlp_fc2.lora_up.weight"].abs().max() == 0
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    blob = json.dumps(meta)
    leaked = [s for s in private_strings(tiny_dataset) if s in blob]
    assert not leaked  # redacted by default, like SD1.5


def test_unet_only_low_memory_recipe_from_single_file(trained_unet_only: Path) -> None:
    tensors, meta = _read(trained_unet_only)
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))["tensors"]
    assert set(tensors) == {k for k in reference if k.startswith("lora_unet_")}
    assert len(tensors) == 2166
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"


def test_sdxl_flag_must_match_the_model(tiny_sdxl: Any, tiny_model: Any, tiny_dataset: Path,
                                        tmp_path: Path) -> None:
    common = ["--train_data_dir", str(tiny_dataset), "--caption_extension", ".txt",
              "--resolution", "64", "--max_train_steps", "1", "--output_dir", str(tmp_path)]
    without = run_cli("train", "--pretrained_model_name_or_path", str(tiny_sdxl.diffusers_dir),
                      *common)
    wrong = run_cli("train", "--sdxl", "--pretrained_model_name_or_path",
                    str(tiny_model.single_file), *common)
    for proc in (without, wrong):
        assert proc.returncode == 2, proc.stderr[-1000:]
        assert len(proc.stderr.strip().splitlines()) == 1
    assert "--sdxl" in without.stderr and "SD1.x" in wrong.stderr
    assert not list(tmp_path.glob("*.safetensors"))


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


def test_loads_in_diffusers_sdxl_pipeline_from_folder(tiny_sdxl: Any, trained: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl.diffusers_dir)
    _check(pipe, trained)


def test_loads_on_single_file_base_and_unet_only(tiny_sdxl: Any, trained: Path,
                                                 trained_unet_only: Path) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from secure_trainer.models.families import sdxl_config
    from secure_trainer.models.loading import load_base_model

    for lora in (trained, trained_unet_only):
        base = load_base_model(tiny_sdxl.single_file)
        assert base.model_format == "single-file-safetensors"
        scheduler = EulerDiscreteScheduler.from_config(
            {k: v for k, v in sdxl_config("scheduler").items() if not k.startswith("_")})
        pipe = StableDiffusionXLPipeline(
            vae=base.vae, text_encoder=base.text_encoder, text_encoder_2=base.text_encoder_2,
            tokenizer=base.tokenizer, tokenizer_2=base.tokenizer_2, unet=base.unet,
            scheduler=scheduler)
        _check(pipe, lora)


def test_sdxl_resume_is_bit_identical(tiny_sdxl: Any, tiny_dataset: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from secure_trainer.kohya.config import parse_train_args
    from secure_trainer.train.loop import train
    from tests.integration.train_support import base_args, write_dataset_config

    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml", flip_aug=True)

    def run(out: str, *extra: str) -> Any:
        argv = base_args(tiny_sdxl.diffusers_dir, cfg, tmp_path / out, "--sdxl",
                         "--max_train_steps", "3", "--learning_rate", "1e-3",
                         "--network_dropout", "0.1", "--lr_scheduler", "cosine", *extra)
        return train(parse_train_args(argv, warn=lambda _m: None))

    saved = run("saved", "--save_every_n_steps", "2", "--save_state")
    state = tmp_path / "saved" / "last-step00000002-state"
    resumed = run("resumed", "--resume", str(state))
    assert saved.steps == resumed.steps == 3 and resumed.losses == saved.losses[2:]
    a = load_file(str(tmp_path / "saved" / "last.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "last.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("lora_te2_") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_network_weights_round_trip(tiny_sdxl: Any, trained: Path) -> None:
    """--network_weights / our exporter agree for SDXL: every lora_te1/te2/unet module loads."""
    from secure_trainer.kohya.export import kohya_state_dict, load_kohya_into
    from secure_trainer.models.loading import load_base_model
    from secure_trainer.models.lora import inject_lora
    from secure_trainer.settings import NetworkSettings

    handles = inject_lora(load_base_model(tiny_sdxl.diffusers_dir),
                          NetworkSettings(dim=4, alpha=4))
    report = load_kohya_into(handles, trained, strict=True)
    assert report.loaded == 986 and not report.missing and not report.ignored
    tensors, _meta = _read(trained)
    exported = kohya_state_dict(handles)
    assert all(torch.equal(exported[k], tensors[k]) for k in tensors)
