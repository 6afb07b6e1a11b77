"""The lora-scripts YAML dialect (`secure-trainer train --config run.yaml`) → Kohya option values.

One YAML per run with keys such as `base_model`, `train_data_dir`, `metadata_path` (a CSV of
file name and caption), `lora_rank`, `lora_alpha`, `batch_size`, `epochs`, `learning_rate`,
`output_dir`, `save_steps`, `freeze_modules`, optionally grouped under `model_config:`,
`train_config:`, `data_config:` or `output_config:`. Every key maps to one train_network.py
option (or a documented special); unknown keys are ConfigErrors naming the key. Pure parsing:
reads only the YAML file; never prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secure_trainer.errors import ConfigError

SECTIONS = ("model_config", "train_config", "data_config", "output_config")
# lora-scripts name → train_network.py option.
KEYS: dict[str, str] = {
    "base_model": "pretrained_model_name_or_path",
    "pretrained_model_name_or_path": "pretrained_model_name_or_path",
    "vae": "vae",
    "train_data_dir": "train_data_dir",
    "reg_data_dir": "reg_data_dir",
    "output_dir": "output_dir",
    "output_name": "output_name",
    "lora_rank": "network_dim",
    "network_dim": "network_dim",
    "lora_alpha": "network_alpha",
    "network_alpha": "network_alpha",
    "lora_dropout": "network_dropout",
    "batch_size": "train_batch_size",
    "train_batch_size": "train_batch_size",
    "epochs": "max_train_epochs",
    "max_train_epochs": "max_train_epochs",
    "max_train_steps": "max_train_steps",
    "learning_rate": "learning_rate",
    "unet_lr": "unet_lr",
    "text_encoder_lr": "text_encoder_lr",
    "lr_scheduler": "lr_scheduler",
    "lr_warmup_steps": "lr_warmup_steps",
    "optimizer": "optimizer_type",
    "optimizer_type": "optimizer_type",
    "save_steps": "save_every_n_steps",
    "save_every_n_epochs": "save_every_n_epochs",
    "resolution": "resolution",
    "enable_bucket": "enable_bucket",
    "min_bucket_reso": "min_bucket_reso",
    "max_bucket_reso": "max_bucket_reso",
    "caption_extension": "caption_extension",
    "shuffle_caption": "shuffle_caption",
    "keep_tokens": "keep_tokens",
    "clip_skip": "clip_skip",
    "seed": "seed",
    "mixed_precision": "mixed_precision",
    "save_precision": "save_precision",
    "gradient_checkpointing": "gradient_checkpointing",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "max_grad_norm": "max_grad_norm",
    "noise_offset": "noise_offset",
    "cache_latents": "cache_latents",
    "sdxl": "sdxl",
}
# Handled here, not mapped 1:1: metadata_path, freeze_modules, model_type, repeats.
SPECIAL = frozenset({"metadata_path", "freeze_modules", "model_type", "repeats"})
_MODEL_TYPES = {"sd1.5": False, "sd15": False, "sd1": False, "sdxl": True}


@dataclass(frozen=True)
class LoraScriptsConfig:
    """A lora-scripts run file as Kohya values plus its dataset specials."""

    values: dict[str, object]
    """train_network.py option name → value (types as in a Kohya TOML)."""
    caption_csv: Path | None
    """`metadata_path`: captions for the images directly inside `train_data_dir`."""
    repeats: int
    """Repeats of that flat folder per epoch (`repeats`, default 1)."""


def _flatten(raw: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError("config: keys must be strings")
        items = value.items() if key in SECTIONS and isinstance(value, dict) else [(key, value)]
        for name, item in items:
            if not isinstance(name, str):
                raise ConfigError("config: keys must be strings")
            if name in flat:
                raise ConfigError(f"config: key '{name}' is given twice")
            flat[name] = item
    return flat


def _freeze(value: object, values: dict[str, object]) -> None:
    modules = [value] if isinstance(value, str) else value
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError("config: freeze_modules must be a list of names")
    names = {m.strip().lower() for m in modules}
    unknown = names - {"unet", "text_encoder", "text_encoders"}
    if unknown:
        raise ConfigError(f"config: freeze_modules entry '{min(unknown)}' is not "
                          "unet or text_encoder")
    if "unet" in names and names & {"text_encoder", "text_encoders"}:
        raise ConfigError("config: freeze_modules freezes everything (nothing left to train)")
    if "unet" in names:
        values["network_train_text_encoder_only"] = True
    if names & {"text_encoder", "text_encoders"}:
        values["network_train_unet_only"] = True


def load_lora_scripts_config(path: Path) -> LoraScriptsConfig:
    """Read a lora-scripts YAML run file (safe loader only).

    Raises ConfigError for a missing/invalid file, an unknown key (named), a bad
    freeze_modules/model_type value.
    """
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ConfigError("config not found or not readable (a lora-scripts .yaml)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"config is not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError("config must be a YAML mapping of lora-scripts keys")
    values: dict[str, object] = {}
    caption_csv: Path | None = None
    repeats = 1
    for key, value in _flatten(raw).items():
        if key in KEYS:
            values[KEYS[key]] = value
        elif key == "metadata_path":
            caption_csv = Path(str(value))
        elif key == "freeze_modules":
            _freeze(value, values)
        elif key == "model_type":
            if str(value).lower() not in _MODEL_TYPES:
                raise ConfigError("config: model_type must be sd1.5 or sdxl")
            values["sdxl"] = _MODEL_TYPES[str(value).lower()]
        elif key == "repeats":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError("config: repeats must be a positive integer")
            repeats = value
        else:
            raise ConfigError(f"unknown key '{key}' in config (not a lora-scripts key we map)")
    return LoraScriptsConfig(values=values, caption_csv=caption_csv, repeats=repeats)
