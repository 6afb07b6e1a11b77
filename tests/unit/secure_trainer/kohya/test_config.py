"""train_network.py flags and --config_file → TrainSettings (kohya-compat §4, checklist item 9)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.kohya import args as kohya_args
from secure_trainer.kohya.config import build_parser, parse_train_args
from secure_trainer.settings import MetadataMode
from tests.conftest import REPO_ROOT
from tests.unit.kohya_images import make_folder

KOHYA_DATA = REPO_ROOT / "tests" / "data" / "kohya"


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    make_folder(tmp_path / "img" / "10_sks dog", 3, caption="sks dog, red", caption_ext=".txt")
    make_folder(tmp_path / "reg" / "1_dog", 2)
    return tmp_path


def base(data: Path, *extra: str) -> list[str]:
    return [
        "--pretrained_model_name_or_path",
        str(data / "model.safetensors"),
        "--output_dir",
        str(data / "out"),
        "--train_data_dir",
        str(data / "img"),
        "--resolution",
        "64",
        *extra,
    ]


def parse(argv: list[str], warnings: list[str] | None = None):
    return parse_train_args(argv, warn=(warnings if warnings is not None else []).append)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_kohya_defaults(data: Path) -> None:
    s = parse(base(data))
    assert s.optimizer.learning_rate == 2e-6 and s.optimizer.optimizer_type == "AdamW"
    assert s.optimizer.lr_scheduler == "constant" and s.max_train_steps == 1600
    assert (s.network.dim, s.network.alpha, s.network.conv_dim) == (4, 1.0, None)
    assert s.datasets[0].subsets[0].caption_extension == ".caption"
    assert s.metadata is MetadataMode.REDACTED and s.output_name == "last"
    parser_defaults = vars(build_parser().parse_args([]))
    assert (
        parser_defaults["learning_rate"] == 2e-6
        and parser_defaults["caption_extension"] == ".caption"
    )


def test_every_known_option_is_a_flag() -> None:
    parser = build_parser()
    flags = {a.dest for a in parser._actions}
    assert set(kohya_args.OPTIONS) <= flags
    # spot-check the ★ options of kohya-compat §4
    for name in (
        "pretrained_model_name_or_path",
        "network_dim",
        "network_alpha",
        "network_args",
        "text_encoder_lr",
        "optimizer_type",
        "lr_warmup_steps",
        "clip_skip",
        "save_precision",
        "cache_latents",
        "max_train_epochs",
        "gradient_accumulation_steps",
        "v2",
    ):
        assert name in kohya_args.OPTIONS


def test_config_file_tables_are_flattened_and_toml_is_appended(data: Path) -> None:
    write(data / "cfg.toml", "[model]\nnetwork_dim = 16\n[opt]\nlearning_rate = 1e-4\nseed = 3\n")
    s = parse(base(data, "--config_file", str(data / "cfg")))
    assert (s.network.dim, s.optimizer.learning_rate, s.seed) == (16, 1e-4, 3)


def test_cli_overrides_file_overrides_default(data: Path) -> None:
    write(data / "cfg.toml", "network_dim = 16\nnetwork_alpha = 8\n")
    s = parse(base(data, "--config_file", str(data / "cfg.toml"), "--network_dim", "32"))
    assert (s.network.dim, s.network.alpha, s.optimizer.learning_rate) == (32, 8.0, 2e-6)


def test_toml_arrays_for_nargs_options(data: Path) -> None:
    write(
        data / "cfg.toml",
        'network_args = ["conv_dim=8", "conv_alpha=2"]\n'
        'optimizer_args = ["weight_decay=0.01", "betas=(0.9,0.99)"]\n'
        "text_encoder_lr = [5e-5]\n",
    )
    s = parse(base(data, "--config_file", str(data / "cfg.toml")))
    assert (s.network.conv_dim, s.network.conv_alpha) == (8, 2.0)
    assert s.optimizer.optimizer_args == (("weight_decay", 0.01), ("betas", (0.9, 0.99)))
    assert s.optimizer.text_encoder_lr == 5e-5


def test_network_args_on_cli_and_conv_alpha_default(data: Path) -> None:
    s = parse(base(data, "--network_args", "conv_dim=4"))
    assert (s.network.conv_dim, s.network.conv_alpha) == (4, 1.0)
    with pytest.raises(ConfigError, match="block_dims"):
        parse(base(data, "--network_args", "block_dims=" + ",".join(["4"] * 25)))
    with pytest.raises(ConfigError, match="unknown network_args key 'bogus'"):
        parse(base(data, "--network_args", "bogus=1"))


def test_unknown_keys_are_config_errors_exit_2(data: Path) -> None:
    write(data / "cfg.toml", "[training]\nlearnig_rate = 1e-4\n")
    with pytest.raises(ConfigError, match="unknown option 'learnig_rate'") as err:
        parse(base(data, "--config_file", str(data / "cfg.toml")))
    assert err.value.exit_code == 2 and "not a train_network.py option" in err.value.message
    with pytest.raises(ConfigError, match="unknown option 'learnig_rate'") as err:
        parse(base(data, "--learnig_rate", "1e-4"))
    assert err.value.exit_code == 2
    with pytest.raises(ConfigError, match="unknown option 'learning'"):
        parse(base(data, "--learning", "1e-4"))  # no prefix abbreviations


def test_bad_toml_reports_the_line(data: Path) -> None:
    write(data / "cfg.toml", "network_dim = 8\nlearning_rate = = 1\n")
    with pytest.raises(ConfigError, match="line 2") as err:
        parse(base(data, "--config_file", str(data / "cfg.toml")))
    assert str(data) not in err.value.message


def test_bad_values_are_config_errors_without_echo(data: Path) -> None:
    with pytest.raises(ConfigError, match="learning_rate") as err:
        parse(base(data, "--learning_rate", "/secret/path"))
    assert "/secret/path" not in err.value.message
    write(data / "cfg.toml", 'network_dim = "eight"\n')
    with pytest.raises(ConfigError, match="network_dim"):
        parse(base(data, "--config_file", str(data / "cfg.toml")))
    with pytest.raises(ConfigError, match="mixed_precision"):
        parse(base(data, "--mixed_precision", "fp8"))


def test_resolution_must_be_multiple_of_64(data: Path) -> None:
    with pytest.raises(ConfigError, match="500"):
        parse(base(data)[:-2] + ["--resolution", "500"])
    s = parse(base(data)[:-2] + ["--resolution", "512,768"])
    assert s.datasets[0].resolution == (512, 768)


@pytest.mark.parametrize(
    ("flags", "key"),
    [
        (["--v2"], "v2"),
        (["--cache_latents_to_disk"], "cache_latents_to_disk"),
        (["--log_with", "wandb"], "log_with"),
        (["--network_module", "lycoris.kohya"], "network_module"),
        (["--save_model_as", "ckpt"], "save_model_as"),
        (["--in_json", "meta.json"], "in_json"),
        (["--huggingface_repo_id", "me/x"], "huggingface_repo_id"),
        (["--multires_noise_iterations", "6"], "multires_noise_iterations"),
        (["--optimizer_type", "DAdaptAdam"], "DAdaptAdam"),
        (["--optimizer_type", "torch.optim.SGD"], "optimizer_type"),
    ],
)
def test_unsupported_options_fail_naming_the_key(data: Path, flags: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=key) as err:
        parse(base(data, *flags))
    assert err.value.exit_code == 2


def test_unsupported_keys_at_their_default_are_accepted(data: Path) -> None:
    write(
        data / "cfg.toml",
        'v2 = false\nsdxl = false\nloss_type = "l2"\nmultires_noise_discount = 0.3\n'
        'save_model_as = "safetensors"\nlog_with = "tensorboard"\n',
    )
    parse(base(data, "--config_file", str(data / "cfg.toml")))


def test_speed_options_warn_once_by_name(data: Path) -> None:
    warnings: list[str] = []
    parse(base(data, "--xformers", "--lowram", "--persistent_data_loader_workers"), warnings)
    assert len(warnings) == 3
    assert {w.split("'")[1] for w in warnings} == {
        "xformers",
        "lowram",
        "persistent_data_loader_workers",
    }


def test_data_loader_workers_choose_input_prefetch(data: Path) -> None:
    # Kohya's default 8 keeps the prefetch thread on; 0 means decode inline in the step.
    assert parse(base(data)).max_data_loader_n_workers == 8
    assert parse(base(data, "--max_data_loader_n_workers", "0")).max_data_loader_n_workers == 0


def test_optimizer_names_are_case_insensitive_and_legacy_flags_map(data: Path) -> None:
    assert (
        parse(base(data, "--optimizer_type", "adamw8bit")).optimizer.optimizer_type == "AdamW8bit"
    )
    assert parse(base(data, "--optimizer_type", "PRODIGY")).optimizer.optimizer_type == "Prodigy"
    assert parse(base(data, "--use_8bit_adam")).optimizer.optimizer_type == "AdamW8bit"
    with pytest.raises(ConfigError):
        parse(base(data, "--use_8bit_adam", "--optimizer_type", "Lion"))


def test_scheduler_and_warmup(data: Path) -> None:
    s = parse(base(data, "--lr_scheduler", "cosine", "--lr_warmup_steps", "10%"))
    assert s.optimizer.lr_warmup_steps == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="constant_with_warmup"):
        parse(base(data, "--lr_warmup_steps", "10"))
    with pytest.raises(ConfigError, match="lr_scheduler"):
        parse(base(data, "--lr_scheduler", "bogus"))


def test_metadata_and_dp_flags(data: Path) -> None:
    assert parse(base(data, "--no_metadata")).metadata is MetadataMode.NONE
    assert parse(base(data, "--metadata", "full")).metadata is MetadataMode.FULL
    with pytest.raises(ConfigError):
        parse(base(data, "--no_metadata", "--metadata", "full"))
    dp = parse(base(data, "--dp", "--dp_target_epsilon", "8", "--dp_delta", "1e-5")).dp
    assert (dp.enabled, dp.target_epsilon, dp.delta, dp.accountant) == (True, 8.0, 1e-5, "rdp")
    with pytest.raises(ConfigError, match="dp_target_epsilon"):
        parse(base(data, "--dp"))
    with pytest.raises(ConfigError, match="needs --dp"):
        parse(base(data, "--dp_noise_multiplier", "1.0"))


def test_missing_folder_and_empty_dataset_are_data_rejected(data: Path) -> None:
    argv = base(data)
    argv[argv.index("--train_data_dir") + 1] = str(data / "private_absent")
    with pytest.raises(DataRejected, match="training data folder not found") as err:
        parse(argv)
    assert err.value.exit_code == 8 and "private_absent" not in err.value.message
    (data / "empty" / "5_x").mkdir(parents=True)
    argv[argv.index("--train_data_dir") + 1] = str(data / "empty")
    with pytest.raises(DataRejected, match="no training images found"):
        parse(argv)


def test_kohya_toml_examples_equal_the_equivalent_flags(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(KOHYA_DATA / "train_config.toml", data / "train_config.toml")
    shutil.copy(KOHYA_DATA / "dataset.toml", data / "dataset.toml")
    monkeypatch.chdir(data)  # the examples use relative paths, as Kohya users' files do
    from_files = parse(["--config_file", "train_config", "--dataset_config", "dataset.toml"])
    flags = [
        "--pretrained_model_name_or_path",
        "models/sd15.safetensors",
        "--network_module",
        "networks.lora",
        "--network_dim",
        "8",
        "--network_alpha",
        "1",
        "--network_args",
        "conv_dim=4",
        "conv_alpha=1",
        "--unet_lr",
        "1e-4",
        "--text_encoder_lr",
        "5e-5",
        "--optimizer_type",
        "AdamW8bit",
        "--learning_rate",
        "1e-4",
        "--optimizer_args",
        "weight_decay=0.01",
        "betas=(0.9,0.99)",
        "--lr_scheduler",
        "cosine",
        "--lr_warmup_steps",
        "50",
        "--cache_latents",
        "--output_dir",
        "output",
        "--output_name",
        "sks_dog",
        "--save_precision",
        "fp16",
        "--save_every_n_epochs",
        "1",
        "--train_batch_size",
        "2",
        "--max_train_epochs",
        "4",
        "--seed",
        "42",
        "--mixed_precision",
        "fp16",
        "--clip_skip",
        "2",
        "--xformers",
        "--max_data_loader_n_workers",
        "0",
        "--max_token_length",
        "225",
        "--noise_offset",
        "0.05",
        "--min_snr_gamma",
        "5",
        "--logging_dir",
        "logs",
        "--log_prefix",
        "sks",
        "--train_data_dir",
        "img",
        "--reg_data_dir",
        "reg",
        "--shuffle_caption",
        "--caption_extension",
        ".txt",
        "--keep_tokens",
        "1",
        "--resolution",
        "512",
        "--enable_bucket",
    ]
    assert parse(flags) == from_files
    assert from_files.datasets[0].subsets[0].class_tokens == "sks dog"
    assert from_files.datasets[0].subsets[1].is_reg


def test_cli_unknown_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from entrypoint.cli import main

    assert main(["train", "--no_such_flag", "1"]) == 2
    assert "unknown option 'no_such_flag'" in capsys.readouterr().err


def test_schedulers_that_need_unsupported_args_fail_early(data: Path) -> None:
    with pytest.raises(ConfigError, match="cosine_with_min_lr"):
        parse(base(data, "--lr_scheduler", "cosine_with_min_lr"))
    s = parse(base(data, "--optimizer_type", "AdaFactor", "--lr_scheduler", "adafactor:1e-3"))
    assert s.optimizer.lr_scheduler == "adafactor:1e-3"


def test_usage_doc_lists_every_option() -> None:
    doc = (REPO_ROOT / "docs" / "kohya-compat-usage.md").read_text()
    for opt in kohya_args.OPTIONS.values():
        assert f"`{opt.name}`" in doc or f"`--{opt.name}" in doc, opt.name


def test_bucket_limits_are_checked_at_parse_time(data: Path) -> None:
    with pytest.raises(ConfigError, match="min_bucket_reso"):
        parse(base(data, "--enable_bucket"))  # default min 256 > resolution 64
    s = parse(base(data, "--enable_bucket", "--min_bucket_reso", "64", "--bucket_reso_steps", "32"))
    assert s.datasets[0].bucket_reso_steps == 32


@pytest.mark.parametrize("steps", ["64", "32", "8"])
def test_synthetic_dataset_with_the_flags_other_tests_use(tmp_path: Path, steps: str) -> None:
    from secure_trainer.data.dataset import KohyaDataset
    from secure_trainer.devtools.synthetic_dataset import make_dataset

    root = make_dataset(tmp_path / "ds")
    flags = [
        "--caption_extension",
        ".txt",
        "--resolution",
        "64",
        "--enable_bucket",
        "--min_bucket_reso",
        "64",
        "--max_bucket_reso",
        "128",
        "--bucket_reso_steps",
        steps,
    ]
    s = parse(
        [
            "--pretrained_model_name_or_path",
            "m",
            "--output_dir",
            str(tmp_path / "o"),
            "--train_data_dir",
            str(root),
            *flags,
        ]
    )
    ds = KohyaDataset(s.datasets, seed=1, prior_loss_weight=1.0)
    assert len(ds.buckets) >= 1 and ds.num_train_images == 90
    batch = next(iter(ds.batches(1)))
    assert batch.images is not None and batch.images.shape[1] == 3
