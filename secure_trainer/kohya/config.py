"""train_network.py-compatible arguments → one frozen TrainSettings (flags, config_file, datasets).

Precedence is Kohya's: explicit command-line flag > `--config_file` TOML > parser default.
Keys no Kohya script knows are ConfigErrors; known-but-unsupported keys error or warn per
`kohya_args.OPTIONS`. SECURITY: messages and warnings never carry a data path, file name or
caption; argparse's own messages (which echo values) are replaced by ours.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from secure_trainer.errors import ConfigError
from secure_trainer.kohya import args as ka
from secure_trainer.kohya.config_sections import (
    check_sdxl_datasets,
    dp_settings,
    metadata_mode,
    network_settings,
    optimizer_settings,
    optional_path,
)
from secure_trainer.kohya.dataset_config import (
    datasets_from_config,
    datasets_from_flat_folder,
    datasets_from_folders,
    require_images,
    toml_error_location,
)
from secure_trainer.kohya.lora_scripts import LoraScriptsConfig, load_lora_scripts_config
from secure_trainer.settings import TrainSettings

Warn = Callable[[str], None]


def _int_or_float(text: str) -> int | float:
    """Kohya's lr_warmup_steps type: "10%" → 0.1, "0.05" → 0.05, "100" → 100."""
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        number = float(text)
        return int(number) if number >= 1 else number
    except ValueError:
        raise argparse.ArgumentTypeError("not an int, float or percentage") from None


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        match = re.match(r"argument (--\w+)", message)
        if match is None:
            raise ConfigError("invalid command-line arguments")
        name = match.group(1)
        if "choose from" in message:
            choices = message.split("choose from", 1)[1].strip(" )")
            raise ConfigError(f"invalid value for option '{name}' (choose from {choices})")
        if "expected" in message:
            raise ConfigError(f"option '{name}' {message.split(':', 1)[1].strip()}")
        # SECURITY: argparse would echo the rejected value (it can be a path); we do not.
        raise ConfigError(f"invalid value for option '{name}'")


_CLI_TYPES: Mapping[str, Callable[[str], Any]] = {
    "str": str,
    "path": str,
    "int": int,
    "float": float,
    "int_or_float": _int_or_float,
    "str_list": str,
    "float_list": float,
}


def _make_parser(*, suppress: bool) -> _Parser:
    parser = _Parser(
        prog="secure-trainer train",
        description="Kohya train_network.py-compatible LoRA training (docs/kohya-compat-usage.md).",
        allow_abbrev=False,  # a typo'd prefix must not silently select another option
        argument_default=argparse.SUPPRESS if suppress else None,
    )
    for opt in ka.OPTIONS.values():
        flag = f"--{opt.name}"
        default = argparse.SUPPRESS if suppress else opt.default
        help_text = {
            ka.OptionKind.REJECT: f"not supported unless left at the default: {opt.why}",
            ka.OptionKind.WARN: f"ignored with a warning: {opt.why}",
            ka.OptionKind.INERT: "accepted; no effect here",
        }.get(opt.kind)
        if opt.value == "flag":
            parser.add_argument(flag, action="store_true", default=default, help=help_text)
            continue
        kwargs: dict[str, Any] = {
            "type": _CLI_TYPES[opt.value],
            "default": default,
            "help": help_text,
        }
        if opt.value in ("str_list", "float_list"):
            kwargs["nargs"] = "*"
        if opt.choices is not None:
            kwargs["choices"] = opt.choices
        parser.add_argument(flag, **kwargs)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The `secure-trainer train` parser: every train_network.py flag with Kohya's defaults.

    Its `error()` raises ConfigError (exit 2) instead of exiting. Raises nothing itself.
    """
    return _make_parser(suppress=False)


def _coerce(opt: ka.KohyaOption, value: object) -> object:
    """A TOML value checked/converted to the option's argparse type; ConfigError names the key."""
    name = opt.name
    if opt.value == "flag":
        if not isinstance(value, bool):
            raise ConfigError(f"config_file: option '{name}' must be true or false")
        return value
    if isinstance(value, bool | dict):
        raise ConfigError(f"config_file: option '{name}' has the wrong type")
    if opt.value in ("str_list", "float_list"):
        items = value if isinstance(value, list) else [value]
        try:
            return [float(v) if opt.value == "float_list" else str(v) for v in items]  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"config_file: option '{name}' must be an array of numbers") from None
    if isinstance(value, list):
        if name == "resolution":
            return ",".join(str(v) for v in value)
        raise ConfigError(f"config_file: option '{name}' must be a single value, not an array")
    try:
        if opt.value in ("str", "path"):
            return str(value)
        if opt.value == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)  # type: ignore[call-overload]
        if opt.value == "float":
            return float(value)  # type: ignore[arg-type]
        return _int_or_float(str(value))
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise ConfigError(
            f"config_file: option '{name}' must be {opt.value.replace('_', ' ')}"
        ) from None


def load_config_file(name: str) -> dict[str, object]:
    """Read a `--config_file` TOML (`.toml` appended if missing), flattened one level, keys checked.

    Raises ConfigError for a missing file, invalid TOML (with the line), an unknown key or a
    value of the wrong type.
    """
    path = Path(name if name.endswith(".toml") else name + ".toml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ConfigError("config_file not found or not readable") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config_file is not valid TOML ({toml_error_location(err)})") from None
    flat: dict[str, object] = {}
    for key, value in raw.items():
        # Kohya: table names only group keys; a top-level key and `[table] key` are the same.
        flat.update(value if isinstance(value, dict) else {key: value})
    out: dict[str, object] = {}
    for key, value in flat.items():
        opt = ka.OPTIONS.get(key)
        if opt is None:
            raise ConfigError(
                f"unknown option '{key}' in config_file (not a train_network.py option)"
            )
        if opt.choices is not None and _coerce(opt, value) not in opt.choices:
            raise ConfigError(f"config_file: invalid value for option '{key}'")
        out[key] = _coerce(opt, value)
    return out


def _yaml_values(config: LoraScriptsConfig) -> dict[str, object]:
    """A lora-scripts file's mapped values, type-checked like a Kohya TOML."""
    out: dict[str, object] = {}
    for key, value in config.values.items():
        opt = ka.OPTIONS[key]
        coerced = _coerce(opt, value)
        if opt.choices is not None and coerced not in opt.choices:
            raise ConfigError(f"config: invalid value for option '{key}'")
        out[key] = coerced
    return out


def _parse_cli(argv: list[str]) -> dict[str, object]:
    args, extras = _make_parser(suppress=True).parse_known_args(argv)
    for extra in extras:
        if extra.startswith("-"):
            name = extra.lstrip("-").split("=", 1)[0]
            raise ConfigError(f"unknown option '{name}' (not a train_network.py option)")
    if extras:
        # SECURITY: a stray positional may be a path or a caption: do not echo it.
        raise ConfigError("unexpected positional argument (all options are --name value)")
    return vars(args)


def _check_support(values: Mapping[str, object], explicit: set[str], warn: Warn) -> None:
    for name in sorted(explicit):
        opt = ka.OPTIONS[name]
        value = values[name]
        if ka.is_default(opt, value) or value in opt.allowed:
            continue
        if opt.kind is ka.OptionKind.REJECT:
            raise ConfigError(f"option '{name}' is not supported: {opt.why}")
        if opt.kind is ka.OptionKind.WARN:
            warn(f"option '{name}' is ignored: {opt.why}")
    if values["network_module"] not in (None, "networks.lora"):
        raise ConfigError("option 'network_module': only networks.lora is supported")
    if values["save_model_as"] not in (None, "safetensors"):
        raise ConfigError(
            "option 'save_model_as': only safetensors is written (pickle formats can run code)"
        )
    if values["log_with"] not in (None, "tensorboard"):
        raise ConfigError(f"option 'log_with' is not supported: {ka.OPTIONS['wandb_api_key'].why}")


def _positive(values: Mapping[str, Any], *names: str) -> None:
    for name in names:
        if values[name] is not None and values[name] < 1:
            raise ConfigError(f"option '{name}' must be at least 1")


def _sdxl_values(values: dict[str, Any], warn: Warn) -> None:
    """sdxl_train_network.py's own rules and defaults, applied to the merged values in place."""
    if values["clip_skip"] is not None:
        warn("option 'clip_skip' is ignored: SDXL always uses the penultimate layers (as sd-scripts)")
        values["clip_skip"] = None
    if values["cache_text_encoder_outputs_to_disk"]:
        values["cache_text_encoder_outputs"] = True  # as sd-scripts: _to_disk implies caching
    if values["cache_text_encoder_outputs"] and not values["network_train_unet_only"]:
        raise ConfigError("cache_text_encoder_outputs needs network_train_unet_only "
                          "(text-encoder LoRA cannot train on cached outputs)")
    if not values["resolution"]:
        values["resolution"] = "1024"  # SDXL's native size: Kohya SDXL configs assume 1024 px
    if int(values["bucket_reso_steps"]) % 32:
        raise ConfigError("bucket_reso_steps must be a multiple of 32 for SDXL")


def parse_train_args(argv: list[str], *, warn: Warn) -> TrainSettings:
    """Parse `secure-trainer train` arguments (Kohya flags, --config_file, --dataset_config).

    `warn` receives one message per ignored speed/memory option (by name, no values).
    Raises ConfigError (exit 2) for unknown keys, bad TOML, bad or unsupported values, a
    resolution not a multiple of 64; DataRejected (exit 8) for missing or empty data folders.
    """
    cli = _parse_cli(argv)
    from_file = load_config_file(str(cli["config_file"])) if cli.get("config_file") else {}
    yaml_cfg = load_lora_scripts_config(Path(str(cli["config"]))) if cli.get("config") else None
    from_yaml = _yaml_values(yaml_cfg) if yaml_cfg is not None else {}
    values: dict[str, Any] = {name: opt.default for name, opt in ka.OPTIONS.items()}
    values.update(from_file)
    values.update(from_yaml)  # lora-scripts YAML: between --config_file and the command line
    values.update(cli)
    explicit = set(from_file) | set(from_yaml) | set(cli)
    _check_support(values, explicit, warn)
    if values["caption_extention"] is not None:  # Kohya's legacy misspelling wins when given
        values["caption_extension"] = values["caption_extention"]
    for required in ("pretrained_model_name_or_path", "output_dir"):
        if not values[required]:
            raise ConfigError(f"option '{required}' is required")
    _positive(
        values,
        "max_train_steps",
        "max_train_epochs",
        "train_batch_size",
        "gradient_accumulation_steps",
        "save_every_n_epochs",
        "save_every_n_steps",
    )
    if values["full_fp16"] and values["mixed_precision"] != "fp16":
        raise ConfigError("full_fp16 needs mixed_precision fp16")
    if values["full_bf16"] and values["mixed_precision"] != "bf16":
        raise ConfigError("full_bf16 needs mixed_precision bf16")
    if values["sdxl"]:
        _sdxl_values(values, warn)
    elif values["cache_text_encoder_outputs"] or values["cache_text_encoder_outputs_to_disk"]:
        raise ConfigError("cache_text_encoder_outputs is for SDXL (sdxl_train_network.py): add --sdxl")
    min_t = 0 if values["min_timestep"] is None else int(values["min_timestep"])
    max_t = 1000 if values["max_timestep"] is None else int(values["max_timestep"])
    if not 0 <= min_t < max_t <= 1000:
        raise ConfigError("min_timestep/max_timestep must satisfy 0 <= min < max <= 1000")

    if values["dataset_config"]:
        if values["train_data_dir"] or values["reg_data_dir"]:
            warn("train_data_dir/reg_data_dir are ignored because dataset_config is given")
        datasets = datasets_from_config(Path(str(values["dataset_config"])), values, warn=warn)
    elif yaml_cfg is not None and yaml_cfg.caption_csv is not None:
        datasets = datasets_from_flat_folder(values, caption_csv=yaml_cfg.caption_csv,
                                             repeats=yaml_cfg.repeats, warn=warn)
    else:
        datasets = datasets_from_folders(values, warn=warn)
    require_images(datasets)
    if values["sdxl"]:
        check_sdxl_datasets(datasets, cache_text=bool(values["cache_text_encoder_outputs"]))
    if values["cache_latents"] and any(
        s.color_aug or s.random_crop for d in datasets for s in d.subsets
    ):
        raise ConfigError("cache_latents cannot be used with color_aug or random_crop")

    return TrainSettings(
        pretrained_model_name_or_path=Path(str(values["pretrained_model_name_or_path"])),
        datasets=datasets,
        output_dir=Path(str(values["output_dir"])),
        output_name=values["output_name"] or "last",
        network=network_settings(values),
        optimizer=optimizer_settings(values),
        dp=dp_settings(values),
        max_train_steps=int(values["max_train_steps"]),
        max_train_epochs=values["max_train_epochs"],
        gradient_accumulation_steps=int(values["gradient_accumulation_steps"]),
        mixed_precision=values["mixed_precision"],
        save_precision=values["save_precision"],
        full_fp16=bool(values["full_fp16"]),
        full_bf16=bool(values["full_bf16"]),
        no_half_vae=bool(values["no_half_vae"]),
        gradient_checkpointing=bool(values["gradient_checkpointing"]),
        cache_latents=bool(values["cache_latents"]),
        max_data_loader_n_workers=int(values["max_data_loader_n_workers"]),
        noise_offset=values["noise_offset"],
        min_snr_gamma=values["min_snr_gamma"],
        v_parameterization=bool(values["v_parameterization"]),
        clip_skip=values["clip_skip"],
        max_token_length=values["max_token_length"],
        prior_loss_weight=float(values["prior_loss_weight"]),
        seed=values["seed"],
        save_every_n_epochs=values["save_every_n_epochs"],
        save_every_n_steps=values["save_every_n_steps"],
        save_state=bool(values["save_state"]),
        save_state_on_train_end=bool(values["save_state_on_train_end"]),
        resume=optional_path(values["resume"]),
        logging_dir=optional_path(values["logging_dir"]),
        log_prefix=values["log_prefix"],
        metadata=metadata_mode(values),
        training_comment=values["training_comment"],
        vae=optional_path(values["vae"]),
        min_timestep=min_t,
        max_timestep=max_t,
        sdxl=bool(values["sdxl"]),
        v2=bool(values["v2"]),
        cache_text_encoder_outputs=bool(values["cache_text_encoder_outputs"]),
        # coupling: data/te_cache.py cache_dir_for (this module stays free of torch imports).
        text_encoder_cache_dir=(Path(str(values["output_dir"]))
                                / f"{values['output_name'] or 'last'}-te-cache"
                                if values["cache_text_encoder_outputs_to_disk"] else None),
        model_card=tuple(
            (n[len("metadata_") :], str(values[n]))
            for n in sorted(values)
            if n.startswith("metadata_") and values[n] is not None
        ),
    )
