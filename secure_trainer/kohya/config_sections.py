"""Settings slices built from merged train_network.py values: network, optimizer, DP, metadata.

Each function takes the merged option values (CLI > config_file > default) and returns one
frozen slice, raising ConfigError that names the offending key. Never reads files or prints.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from secure_trainer.errors import ConfigError
from secure_trainer.kohya import args as ka
from secure_trainer.settings import (
    DatasetSettings,
    DPSettings,
    MetadataMode,
    NetworkSettings,
    OptimizerSettings,
)


def optional_path(value: object) -> Path | None:
    """None for an unset path option, else a Path."""
    return None if value in (None, "") else Path(str(value))


def _key_values(items: object, option: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items or []:  # type: ignore[attr-defined]
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"option '{option}': entries must look like key=value")
        pairs.append((key.strip(), value.strip()))
    return pairs


def network_settings(values: Mapping[str, Any]) -> NetworkSettings:
    conv_dim: int | None = None
    conv_alpha: float | None = None
    for key, value in _key_values(values["network_args"], "network_args"):
        try:
            if key == "conv_dim":
                conv_dim = int(value)
            elif key == "conv_alpha":
                conv_alpha = float(value)
            elif key in ("rank_dropout", "module_dropout") and float(value) == 0.0:
                continue  # zero dropout is the default: nothing changes
            elif key in ka.NETWORK_ARGS_REJECTED:
                raise ConfigError(f"network_args key '{key}' is not supported: {ka._WHAT}")
            else:
                raise ConfigError(
                    f"unknown network_args key '{key}' (not a networks.lora argument)"
                )
        except ValueError:
            raise ConfigError(f"network_args key '{key}' needs a number") from None
    if conv_dim is not None and conv_alpha is None:
        conv_alpha = 1.0
    if values["network_train_unet_only"] and values["network_train_text_encoder_only"]:
        raise ConfigError(
            "network_train_unet_only and network_train_text_encoder_only exclude each other"
        )
    dim = values["network_dim"]
    if dim is not None and dim < 1:
        raise ConfigError("network_dim must be at least 1")
    return NetworkSettings(
        dim=4 if dim is None else int(dim),
        alpha=1.0 if values["network_alpha"] is None else float(values["network_alpha"]),
        conv_dim=conv_dim,
        conv_alpha=conv_alpha,
        train_unet_only=bool(values["network_train_unet_only"]),
        train_text_encoder_only=bool(values["network_train_text_encoder_only"]),
        network_weights=optional_path(values["network_weights"]),
        dropout=values["network_dropout"],
    )


def _optimizer_name(values: Mapping[str, Any]) -> str:
    name = str(values["optimizer_type"] or "")
    legacy = (
        "AdamW8bit" if values["use_8bit_adam"] else "Lion" if values["use_lion_optimizer"] else ""
    )
    if values["use_8bit_adam"] and values["use_lion_optimizer"]:
        raise ConfigError("use_8bit_adam and use_lion_optimizer exclude each other")
    if legacy and name:
        raise ConfigError(
            "give either optimizer_type or use_8bit_adam/use_lion_optimizer, not both"
        )
    name = name or legacy or "AdamW"
    if "." in name:
        raise ConfigError(
            "optimizer_type as a Python class path is not supported (it would import code)"
        )
    if name.lower() in ka.OPTIMIZERS:
        return ka.OPTIMIZERS[name.lower()]
    supported = ", ".join(ka.OPTIMIZERS.values())
    if name.lower() in ka.KNOWN_UNSUPPORTED_OPTIMIZERS:
        raise ConfigError(f"optimizer_type '{name}' is not supported (use one of {supported})")
    raise ConfigError(f"unknown optimizer_type '{name}' (use one of {supported})")


def optimizer_settings(values: Mapping[str, Any]) -> OptimizerSettings:
    args: list[tuple[str, object]] = []
    for key, text in _key_values(values["optimizer_args"], "optimizer_args"):
        try:
            args.append((key, ast.literal_eval(text)))
        except (ValueError, SyntaxError):
            raise ConfigError(f"optimizer_args '{key}': value is not a Python literal") from None
    scheduler = str(values["lr_scheduler"])
    if scheduler.startswith("adafactor:"):
        try:
            float(scheduler.split(":", 1)[1])
        except ValueError:
            raise ConfigError("lr_scheduler adafactor:<initial lr> needs a number") from None
    elif scheduler in ka.KNOWN_UNSUPPORTED_SCHEDULERS:
        raise ConfigError(f"lr_scheduler '{scheduler}' is not supported (it needs scheduler args)")
    elif scheduler not in (*ka.SCHEDULERS, "adafactor"):
        raise ConfigError(
            f"unknown lr_scheduler (use one of {', '.join(ka.SCHEDULERS)}, adafactor[:<lr>])"
        )
    warmup = values["lr_warmup_steps"] or 0
    if warmup < 0:
        raise ConfigError("lr_warmup_steps must not be negative")
    if warmup and (scheduler == "constant" or scheduler.startswith("adafactor")):
        raise ConfigError("lr_scheduler does not take lr_warmup_steps; use constant_with_warmup")
    te_lrs = list(values["text_encoder_lr"] or [])
    te_lr_2: float | None = None
    if values.get("sdxl") and len(te_lrs) == 2:
        # sdxl_train_network.py: two values = CLIP-L, OpenCLIP-bigG.
        te_lr_2 = te_lrs.pop()
    if len(set(te_lrs)) > 1:
        raise ConfigError("text_encoder_lr takes one value (two with --sdxl: CLIP-L, OpenCLIP-bigG)")
    return OptimizerSettings(
        learning_rate=float(values["learning_rate"]),
        unet_lr=values["unet_lr"],
        text_encoder_lr=te_lrs[0] if te_lrs else None,
        text_encoder_lr_2=te_lr_2,
        optimizer_type=_optimizer_name(values),
        optimizer_args=tuple(args),
        lr_scheduler=scheduler,
        lr_warmup_steps=warmup,
        lr_scheduler_num_cycles=int(values["lr_scheduler_num_cycles"]),
        lr_scheduler_power=float(values["lr_scheduler_power"]),
        max_grad_norm=float(values["max_grad_norm"]),
    )


def dp_settings(values: Mapping[str, Any]) -> DPSettings:
    others = [
        n
        for n in (
            "dp_target_epsilon",
            "dp_delta",
            "dp_max_grad_norm",
            "dp_noise_multiplier",
            "dp_accountant",
        )
        if values[n] is not None
    ]
    if not values["dp"]:
        if others:
            raise ConfigError(f"option '{others[0]}' needs --dp")
        return DPSettings()
    eps, sigma = values["dp_target_epsilon"], values["dp_noise_multiplier"]
    if (eps is None) == (sigma is None):
        raise ConfigError("--dp needs exactly one of --dp_target_epsilon or --dp_noise_multiplier")
    for name in ("dp_target_epsilon", "dp_noise_multiplier", "dp_max_grad_norm"):
        if values[name] is not None and values[name] <= 0:
            raise ConfigError(f"option '{name}' must be positive")
    delta = values["dp_delta"]
    if delta is not None and not 0 < delta < 1:
        raise ConfigError("option 'dp_delta' must be between 0 and 1")
    return DPSettings(
        enabled=True,
        target_epsilon=eps,
        delta=delta,
        max_grad_norm=values["dp_max_grad_norm"] or 1.0,
        noise_multiplier=sigma,
        accountant=values["dp_accountant"] or "rdp",
    )


def metadata_mode(values: Mapping[str, Any]) -> MetadataMode:
    chosen = values["metadata"]
    if values["no_metadata"]:
        if chosen not in (None, "none"):
            raise ConfigError("no_metadata conflicts with --metadata " + str(chosen))
        return MetadataMode.NONE
    return MetadataMode(chosen) if chosen else MetadataMode.REDACTED


def check_sdxl_datasets(datasets: tuple[DatasetSettings, ...], *, cache_text: bool) -> None:
    """sdxl_train_network.py's dataset rules: bucket steps a multiple of 32 and, when text-encoder
    outputs are cached, no caption randomness (each caption must encode to one fixed output).
    Raises ConfigError naming the key."""
    for ds in datasets:
        if ds.bucket_reso_steps % 32:
            raise ConfigError("bucket_reso_steps must be a multiple of 32 for SDXL")
        if not cache_text:
            continue
        for sub in ds.subsets:
            for key in ("shuffle_caption", "caption_dropout_rate", "caption_dropout_every_n_epochs",
                        "caption_tag_dropout_rate", "token_warmup_step", "enable_wildcard"):
                if getattr(sub, key):
                    raise ConfigError(f"cache_text_encoder_outputs cannot be used with {key} "
                                      "(captions must not change between epochs)")
