"""sdxl_train_network.py flags → TrainSettings: what is implemented, refused or ignored for SDXL."""

from __future__ import annotations

from pathlib import Path

import pytest

from secure_trainer.errors import ConfigError
from secure_trainer.kohya import args as kohya_args
from secure_trainer.kohya.config import parse_train_args
from secure_trainer.settings import TrainSettings
from tests.unit.kohya_images import make_folder

# Every option sdxl_train_network.py adds to train_network.py's parser
# (sdxl_train_util.add_sdxl_training_arguments), plus the flags that pick the family.
SDXL_FLAGS = ("sdxl", "v2", "v_parameterization", "cache_text_encoder_outputs",
              "cache_text_encoder_outputs_to_disk", "disable_mmap_load_safetensors")


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    make_folder(tmp_path / "img" / "10_sks dog", 2, caption="sks dog, red", caption_ext=".txt")
    return tmp_path


def parse(data: Path, *extra: str, warnings: list[str] | None = None) -> TrainSettings:
    argv = ["--pretrained_model_name_or_path", str(data / "m.safetensors"), "--output_dir",
            str(data / "out"), "--train_data_dir", str(data / "img"), "--caption_extension",
            ".txt", *extra]
    return parse_train_args(argv, warn=(warnings if warnings is not None else []).append)


def test_every_sdxl_flag_is_classified() -> None:
    for name in SDXL_FLAGS:
        opt = kohya_args.OPTIONS[name]
        assert opt.kind in (kohya_args.OptionKind.IMPLEMENTED, kohya_args.OptionKind.REJECT,
                            kohya_args.OptionKind.WARN)
        if opt.kind is not kohya_args.OptionKind.IMPLEMENTED:
            assert opt.why


def test_sdxl_defaults_to_1024_and_carries_the_flags(data: Path) -> None:
    s = parse(data, "--sdxl", "--network_train_unet_only", "--cache_text_encoder_outputs")
    assert s.sdxl and s.cache_text_encoder_outputs and s.network.train_unet_only
    assert s.datasets[0].resolution == (1024, 1024)
    assert parse(data, "--sdxl", "--resolution", "512").datasets[0].resolution == (512, 512)
    assert not parse(data, "--resolution", "512").sdxl


def test_two_text_encoder_lrs_for_sdxl(data: Path) -> None:
    s = parse(data, "--sdxl", "--text_encoder_lr", "1e-5", "2e-5")
    assert (s.optimizer.text_encoder_lr, s.optimizer.text_encoder_lr_2) == (1e-5, 2e-5)
    one = parse(data, "--sdxl", "--text_encoder_lr", "3e-5")
    assert (one.optimizer.text_encoder_lr, one.optimizer.text_encoder_lr_2) == (3e-5, None)
    with pytest.raises(ConfigError):
        parse(data, "--resolution", "64", "--text_encoder_lr", "1e-5", "2e-5")


@pytest.mark.parametrize("extra", [
    ("--sdxl", "--cache_text_encoder_outputs"),  # text-encoder LoRA cannot use cached outputs
    ("--resolution", "64", "--cache_text_encoder_outputs", "--network_train_unet_only"),  # not SDXL
    ("--sdxl", "--cache_text_encoder_outputs", "--network_train_unet_only", "--shuffle_caption"),
    ("--sdxl", "--cache_text_encoder_outputs", "--network_train_unet_only",
     "--caption_dropout_rate", "0.1"),
    ("--sdxl", "--cache_text_encoder_outputs_to_disk"),  # implies caching: TE LoRA refused
    ("--resolution", "64", "--cache_text_encoder_outputs_to_disk", "--network_train_unet_only"),
    ("--sdxl", "--bucket_reso_steps", "48", "--enable_bucket"),
])
def test_sdxl_refusals_are_config_errors(data: Path, extra: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as err:
        parse(data, *extra)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_cache_to_disk_goes_under_the_output_folder(data: Path) -> None:
    s = parse(data, "--sdxl", "--network_train_unet_only", "--cache_text_encoder_outputs_to_disk",
              "--output_name", "run1")
    assert s.cache_text_encoder_outputs  # implied, as sd-scripts does
    assert s.text_encoder_cache_dir == data / "out" / "run1-te-cache"
    assert parse(data, "--sdxl", "--network_train_unet_only",
                 "--cache_text_encoder_outputs").text_encoder_cache_dir is None


def test_dp_is_accepted_for_sdxl(data: Path) -> None:
    s = parse(data, "--sdxl", "--dp", "--dp_noise_multiplier", "1.0")
    assert s.sdxl and s.dp.enabled


def test_long_prompts_are_accepted_for_sdxl(data: Path) -> None:
    assert parse(data, "--sdxl", "--max_token_length", "225").max_token_length == 225


def test_clip_skip_is_ignored_for_sdxl_with_a_warning(data: Path) -> None:
    warnings: list[str] = []
    s = parse(data, "--sdxl", "--clip_skip", "2", warnings=warnings)
    assert s.clip_skip is None
    assert any("clip_skip" in w for w in warnings)


def test_kohya_gui_sdxl_config_file_runs(data: Path) -> None:
    config = data / "sdxl.toml"
    config.write_text("\n".join([
        "[model_arguments]", f'pretrained_model_name_or_path = "{data / "m.safetensors"}"',
        "sdxl = true", "no_half_vae = true",
        "[training_arguments]", 'mixed_precision = "bf16"', "full_bf16 = true",
        "gradient_checkpointing = true", "cache_latents = true",
        "cache_text_encoder_outputs = true", "network_train_unet_only = true",
        "cache_text_encoder_outputs_to_disk = true", "[dataset_arguments]", f'train_data_dir = "{data / "img"}"', 'caption_extension = ".txt"',
        'resolution = "1024,1024"', "enable_bucket = true", "min_bucket_reso = 256",
        "max_bucket_reso = 2048", "bucket_reso_steps = 64",
        "[saving_arguments]", f'output_dir = "{data / "out"}"', 'save_model_as = "safetensors"',
    ]) + "\n", encoding="utf-8")
    warnings: list[str] = []
    s = parse_train_args(["--config_file", str(config)], warn=warnings.append)
    assert s.sdxl and s.full_bf16 and s.cache_text_encoder_outputs
    assert s.text_encoder_cache_dir == data / "out" / "last-te-cache"
    assert s.datasets[0].resolution == (1024, 1024) and s.datasets[0].max_bucket_reso == 2048
    assert s.no_half_vae and not any("no_half_vae" in w for w in warnings)
