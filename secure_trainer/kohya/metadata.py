"""The `__metadata__` of an exported LoRA: Kohya's `ss_*` / `modelspec.*` keys in three modes.

REDACTED (default) keeps only what tools need to load and label the file: nothing that names or
counts the private data (no folder, file, caption, tag, image count, timestamp, model file name
or hash of local files), and no step or epoch count: steps / epochs = images × repeats / batch,
so any two of them give the dataset size. FULL is sd-scripts' complete key set. NONE is sd-scripts'
`--no_metadata` set. Every value is a string. Never reads data files itself.
"""

from __future__ import annotations

import datetime
import json
import secrets
from collections.abc import Mapping
from typing import Any

from secure_trainer import __version__
from secure_trainer.errors import ConfigError
from secure_trainer.settings import MetadataMode, TrainSettings

NETWORK_MODULE = "networks.lora"
GENERIC_TITLE = "LoRA"
# Keys that describe the private data or the local environment; allowed only in FULL mode.
PRIVATE_KEYS = frozenset({
    "ss_dataset_dirs", "ss_reg_dataset_dirs", "ss_datasets", "ss_tag_frequency", "ss_bucket_info",
    "ss_num_train_images", "ss_num_reg_images", "ss_num_batches_per_epoch", "ss_output_name",
    "ss_training_comment", "ss_sd_model_name", "ss_vae_name", "ss_sd_model_hash",
    "ss_new_sd_model_hash", "ss_vae_hash", "ss_new_vae_hash", "ss_training_started_at",
    "ss_training_finished_at", "modelspec.date", "ss_seed", "ss_sd_scripts_commit_hash",
    "modelspec.implementation_version", "modelspec.thumbnail", "sshs_legacy_hash",
    # coupling: privacy/dp_record.PRIVATE_DP_KEYS (q = expected batch / N reveals N).
    "ss_dp_sampling_rate", "ss_dp_num_images",
}) | frozenset({
    # Counts of steps, epochs and batches: with the batch size and repeats they reveal N.
    "ss_steps", "ss_epoch", "ss_max_train_steps", "ss_num_epochs", "ss_num_validation_images",
    "ss_max_validation_steps", "ss_lr_warmup_steps",
})


def _s(value: object) -> str:
    """sd-scripts' convention: Python `str()` of the value (True/False/None, tuples)."""
    return str(value)


def _json(value: object) -> str:
    return "None" if value is None else json.dumps(value)


def network_args(settings: TrainSettings) -> dict[str, str] | None:
    """The raw `network_args` strings sd-scripts records (only conv settings apply to us)."""
    net = settings.network
    if not net.conv_dim:
        return None
    conv_alpha = net.conv_alpha if net.conv_alpha is not None else 1.0
    return {"conv_dim": _s(net.conv_dim), "conv_alpha": _s(conv_alpha)}


def _modelspec(settings: TrainSettings, *, full: bool) -> dict[str, str]:
    width, height = settings.datasets[0].resolution if settings.datasets else (512, 512)
    spec = {
        "modelspec.sai_model_spec": "1.0.1",
        # coupling: sd-scripts' sai_model_spec names; SDXL LoRA points at Stability's repo.
        "modelspec.architecture": ("stable-diffusion-xl-v1-base/lora" if settings.sdxl
                                   else "stable-diffusion-v1/lora"),
        "modelspec.implementation": ("https://github.com/Stability-AI/generative-models"
                                     if settings.sdxl else "diffusers"),
        "modelspec.title": settings.output_name if full else GENERIC_TITLE,
        "modelspec.resolution": f"{width}x{height}",
        "modelspec.prediction_type": "v" if settings.v_parameterization else "epsilon",
    }
    if full:
        spec["modelspec.date"] = datetime.datetime.now().replace(microsecond=0).isoformat()
        spec["modelspec.implementation_version"] = f"secure-trainer/{__version__}"
        if settings.clip_skip is not None:
            spec["modelspec.encoder_layer"] = _s(settings.clip_skip)
    return spec


def _minimal(settings: TrainSettings) -> dict[str, str]:
    net = settings.network
    out = {
        "ss_network_module": NETWORK_MODULE,
        "ss_network_dim": _s(net.dim),
        "ss_network_alpha": _s(float(net.alpha) if net.alpha else float(net.dim)),
        # sd-scripts writes one SDXL version string, v-prediction or not.
        "ss_base_model_version": ("sdxl_base_v1-0" if settings.sdxl
                                  else "sd_v1_v" if settings.v_parameterization else "sd_v1"),
        "ss_v2": "False",
    }
    args = network_args(settings)
    if args is not None:
        out["ss_network_args"] = json.dumps(args)
    return out


def _full(settings: TrainSettings, info: Mapping[str, Any]) -> dict[str, str]:
    ds = settings.datasets[0] if settings.datasets else None
    sub = ds.subsets[0] if ds and ds.subsets else None
    opt = settings.optimizer
    resolution = ds.resolution if ds else None
    total_batch = (ds.batch_size if ds else 1) * settings.gradient_accumulation_steps
    return {
        "ss_session_id": _s(info.get("session_id", secrets.randbelow(2**31))),
        "ss_training_started_at": _s(info.get("training_started_at")),
        "ss_training_finished_at": _s(info.get("training_finished_at")),
        "ss_output_name": settings.output_name,
        "ss_learning_rate": _s(opt.learning_rate),
        "ss_text_encoder_lr": _s(opt.text_encoder_lr),
        "ss_unet_lr": _s(opt.unet_lr),
        "ss_num_train_images": _s(info.get("num_train_images")),
        "ss_num_validation_images": "0",
        "ss_num_reg_images": _s(info.get("num_reg_images")),
        "ss_num_batches_per_epoch": _s(info.get("num_batches_per_epoch")),
        "ss_num_epochs": _s(info.get("num_epochs", settings.max_train_epochs)),
        "ss_gradient_checkpointing": _s(settings.gradient_checkpointing),
        "ss_gradient_accumulation_steps": _s(settings.gradient_accumulation_steps),
        "ss_max_train_steps": _s(info.get("max_train_steps", settings.max_train_steps)),
        "ss_lr_warmup_steps": _s(opt.lr_warmup_steps),
        "ss_lr_scheduler": opt.lr_scheduler,
        "ss_network_dropout": _s(settings.network.dropout),
        "ss_mixed_precision": settings.mixed_precision,
        "ss_full_fp16": _s(settings.full_fp16),
        "ss_clip_skip": _s(settings.clip_skip),
        "ss_max_token_length": _s(settings.max_token_length),
        "ss_cache_latents": _s(settings.cache_latents),
        "ss_seed": _s(settings.seed),
        "ss_lowram": "False",
        "ss_noise_offset": _s(settings.noise_offset),
        "ss_multires_noise_iterations": "None",
        "ss_multires_noise_discount": "0.3",
        "ss_adaptive_noise_scale": "None",
        "ss_zero_terminal_snr": "False",
        "ss_training_comment": _s(settings.training_comment),
        "ss_sd_scripts_commit_hash": f"secure-trainer {__version__}",
        "ss_optimizer": _s(info.get("optimizer", opt.optimizer_type)),
        "ss_max_grad_norm": _s(opt.max_grad_norm),
        "ss_caption_dropout_rate": _s(sub.caption_dropout_rate if sub else 0.0),
        "ss_caption_dropout_every_n_epochs": _s(sub.caption_dropout_every_n_epochs if sub else 0),
        "ss_caption_tag_dropout_rate": _s(sub.caption_tag_dropout_rate if sub else 0.0),
        "ss_face_crop_aug_range": "None",
        "ss_prior_loss_weight": _s(settings.prior_loss_weight),
        "ss_min_snr_gamma": _s(settings.min_snr_gamma),
        "ss_scale_weight_norms": "None",
        "ss_ip_noise_gamma": "None",
        "ss_debiased_estimation": "False",
        "ss_noise_offset_random_strength": "False",
        "ss_ip_noise_gamma_random_strength": "False",
        "ss_loss_type": "l2",
        "ss_huber_schedule": "snr",
        "ss_huber_scale": "1.0",
        "ss_huber_c": "0.1",
        "ss_fp8_base": "False",
        "ss_fp8_base_unet": "False",
        "ss_validation_seed": "None",
        "ss_validation_split": "0.0",
        "ss_max_validation_steps": "None",
        "ss_validate_every_n_epochs": "None",
        "ss_validate_every_n_steps": "None",
        "ss_resize_interpolation": "None",
        "ss_batch_size_per_device": _s(ds.batch_size if ds else 1),
        "ss_total_batch_size": _s(total_batch),
        "ss_resolution": _s(resolution),
        "ss_color_aug": _s(sub.color_aug if sub else False),
        "ss_flip_aug": _s(sub.flip_aug if sub else False),
        "ss_random_crop": _s(sub.random_crop if sub else False),
        "ss_shuffle_caption": _s(sub.shuffle_caption if sub else False),
        "ss_enable_bucket": _s(ds.enable_bucket if ds else False),
        "ss_bucket_no_upscale": _s(ds.bucket_no_upscale if ds else False),
        "ss_min_bucket_reso": _s(ds.min_bucket_reso if ds else None),
        "ss_max_bucket_reso": _s(ds.max_bucket_reso if ds else None),
        "ss_keep_tokens": _s(sub.keep_tokens if sub else 0),
        "ss_dataset_dirs": _json(info.get("dataset_dirs")),
        "ss_reg_dataset_dirs": _json(info.get("reg_dataset_dirs", {})),
        "ss_tag_frequency": _json(info.get("tag_frequency")),
        "ss_bucket_info": _json(info.get("bucket_info")),
        "ss_sd_model_name": _s(info.get("sd_model_name")),
        "ss_sd_model_hash": _s(info.get("sd_model_hash")),
        "ss_new_sd_model_hash": _s(info.get("new_sd_model_hash")),
    }


def build_metadata(settings: TrainSettings, *, mode: MetadataMode,
                   training_info: Mapping[str, Any]) -> dict[str, str]:
    """The LoRA file's metadata for `mode` (all values strings; `sshs_*` hashes are added by
    export.save_lora, which needs the tensor bytes).

    `training_info` keys (all optional): `steps`, `epoch` (FULL only: they count the data);
    `extra` (dict[str, str], merged in every mode, e.g. the DP helper's `ss_dp_*`); FULL only:
    `session_id`, `training_started_at`/`training_finished_at` (unix time), `num_train_images`,
    `num_reg_images`, `num_batches_per_epoch`, `num_epochs`, `max_train_steps`, `optimizer`
    (display string), `dataset_dirs`/`reg_dataset_dirs` ({folder basename: {"n_repeats",
    "img_count"}}), `tag_frequency` ({folder basename: {tag: count}}), `bucket_info`,
    `sd_model_name`, `sd_model_hash`, `new_sd_model_hash`. REDACTED and NONE ignore the FULL keys.
    Raises ConfigError if `extra` is not str→str or, outside FULL, would add a private key.
    """
    out = _minimal(settings)
    if mode is MetadataMode.NONE:
        out.update(_modelspec(settings, full=False))
    elif mode is MetadataMode.REDACTED:
        out.update(_modelspec(settings, full=False))
        width, height = settings.datasets[0].resolution if settings.datasets else (512, 512)
        out.update({
            "ss_resolution": _s((width, height)),
            # Random per run: links checkpoints of one run, says nothing about the data.
            "ss_session_id": _s(training_info.get("session_id", secrets.randbelow(2**31))),
        })
    elif mode is MetadataMode.FULL:
        out.update(_modelspec(settings, full=True))
        out.update(_full(settings, training_info))
        out.update({"ss_steps": _s(training_info.get("steps")),
                    "ss_epoch": _s(training_info.get("epoch"))})
    else:  # pragma: no cover - exhaustive over MetadataMode
        raise AssertionError(mode)
    extra = training_info.get("extra") or {}
    if not isinstance(extra, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise ConfigError("extra metadata must map strings to strings")
    if mode is not MetadataMode.FULL and PRIVATE_KEYS & set(extra):
        raise ConfigError("extra metadata may not add data-describing keys outside --metadata full")
    out.update(extra)
    return out
