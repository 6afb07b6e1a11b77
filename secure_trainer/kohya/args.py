"""Every option sd-scripts' train_network.py knows, and what secure-trainer does with it.

Each option is implemented, rejected when set (it would change what is trained or where data
goes), accepted with a one-time warning (speed/memory/cosmetic only), or inert (no effect
without a companion option we reject). Names no Kohya script knows are not in the table: the
caller turns them into a ConfigError. Pure data; never reads files or prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

ValueType = Literal["flag", "str", "int", "float", "int_or_float", "path", "str_list", "float_list"]


class OptionKind(StrEnum):
    """What secure-trainer does with a Kohya option."""

    IMPLEMENTED = "implemented"  # same meaning as train_network.py
    REJECT = "reject"  # ConfigError unless left at Kohya's default (or an `allowed` value)
    WARN = "warn"  # accepted and ignored with a one-time warning naming it
    INERT = "inert"  # accepted silently: only matters together with an option we reject
    OURS = "ours"  # secure-trainer's own option


@dataclass(frozen=True)
class KohyaOption:
    """One option: argparse shape (type, default, choices) plus our handling and its reason."""

    name: str
    kind: OptionKind
    value: ValueType
    default: object = None
    choices: tuple[object, ...] | None = None
    why: str = ""
    allowed: tuple[object, ...] = ()  # REJECT: values besides the default that are fine


_I, _R, _W, _N, _O = (
    OptionKind.IMPLEMENTED,
    OptionKind.REJECT,
    OptionKind.WARN,
    OptionKind.INERT,
    OptionKind.OURS,
)

_WHAT = "it changes what is trained and is not implemented"
_EGRESS = "it sends data or credentials off this machine"
_DISK = "it writes data outside the encrypted workspace"
_SPEED = "speed/memory tuning only; secure-trainer manages this itself"
_SAMPLE = "sample-image generation during training is not implemented"
_SAVE = "checkpoint retention/ratio options are not implemented; every save is kept"
_DIST = "distributed/compile tuning is not used by secure-trainer"
_CODE = "it would import arbitrary code"
_TOKENIZER = "tokenizers are loaded from the model folder only"
_CACHE_INFO = "metadata_cache.json is never written (it would hold captions)"
_LOG_CONFIG = "the run config is not copied into TensorBoard (it holds paths)"
_LOGGING = "logging is fixed and redacted"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# fmt: off
# coupling: secure_trainer/train/optim.py builds exactly these (plus `adafactor[:<initial lr>]`).
_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
)
_UNSUPPORTED_SCHEDULERS = (
    "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay", "piecewise_constant",
)
_SAMPLERS = (
    "ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpm_2", "dpm_2_a", "dpmsolver",
    "dpmsolver++", "dpmsingle", "k_lms", "k_euler", "k_euler_a", "k_dpm_2", "k_dpm_2_a",
)
_INTERPOLATIONS = ("lanczos", "nearest", "bilinear", "linear", "bicubic", "cubic", "area")

# (name, kind, value type, default, extra) — extra: choices / why / allowed.
_ROWS: tuple[tuple[str, OptionKind, ValueType, object, dict[str, object]], ...] = (
    # -- model
    ("pretrained_model_name_or_path", _I, "path", None, {}),
    ("v2", _R, "flag", False, {"why": "SD2.x models are not supported (SD1.x and SDXL are)"}),
    ("v_parameterization", _I, "flag", False, {}),
    ("vae", _I, "path", None, {}),
    ("tokenizer_cache_dir", _W, "str", None, {"why": _TOKENIZER}),
    ("no_half_vae", _I, "flag", False, {}),
    ("lowram", _W, "flag", False, {"why": _SPEED}),
    ("highvram", _W, "flag", False, {"why": _SPEED}),
    # -- SDXL (sdxl_train_network.py; sdxl_train_util.add_sdxl_training_arguments)
    ("sdxl", _I, "flag", False, {}),
    ("cache_text_encoder_outputs", _I, "flag", False, {}),
    ("cache_text_encoder_outputs_to_disk", _I, "flag", False, {}),
    ("disable_mmap_load_safetensors", _W, "flag", False, {"why": _SPEED}),
    # -- data
    ("train_data_dir", _I, "path", None, {}),
    ("reg_data_dir", _I, "path", None, {}),
    ("dataset_config", _I, "path", None, {}),
    ("in_json", _R, "str", None, {"why": "fine-tuning (metadata JSON) mode is not implemented"}),
    ("dataset_repeats", _I, "int", 1, {}),
    ("dataset_class", _R, "str", None, {"why": _CODE}),
    ("conditioning_data_dir", _R, "str", None, {"why": "ControlNet datasets are not supported"}),
    ("masked_loss", _R, "flag", False, {"why": _WHAT}),
    ("alpha_mask", _R, "flag", False, {"why": _WHAT}),
    ("resolution", _I, "str", None, {}),
    ("enable_bucket", _I, "flag", False, {}),
    ("min_bucket_reso", _I, "int", 256, {}),
    ("max_bucket_reso", _I, "int", 1024, {}),
    ("bucket_reso_steps", _I, "int", 64, {}),
    ("bucket_no_upscale", _I, "flag", False, {}),
    ("resize_interpolation", _I, "str", None, {"choices": _INTERPOLATIONS}),
    ("caption_extension", _I, "str", '.caption', {}),
    ("caption_extention", _I, "str", None, {}),
    ("caption_separator", _I, "str", ',', {}),
    ("shuffle_caption", _I, "flag", False, {}),
    ("keep_tokens", _I, "int", 0, {}),
    ("keep_tokens_separator", _I, "str", '', {}),
    ("secondary_separator", _I, "str", None, {}),
    ("enable_wildcard", _I, "flag", False, {}),
    ("caption_prefix", _I, "str", None, {}),
    ("caption_suffix", _I, "str", None, {}),
    ("caption_dropout_rate", _I, "float", 0.0, {}),
    ("caption_dropout_every_n_epochs", _I, "int", 0, {}),
    ("caption_tag_dropout_rate", _I, "float", 0.0, {}),
    ("token_warmup_min", _I, "int", 1, {}),
    ("token_warmup_step", _I, "float", 0.0, {}),
    ("color_aug", _I, "flag", False, {}),
    ("flip_aug", _I, "flag", False, {}),
    ("random_crop", _I, "flag", False, {}),
    ("face_crop_aug_range", _R, "str", None, {"why": _WHAT}),
    ("debug_dataset", _R, "flag", False, {"why": "it prints captions and shows images"}),
    ("cache_info", _W, "flag", False, {"why": _CACHE_INFO}),
    ("cache_latents", _I, "flag", False, {}),
    ("cache_latents_to_disk", _R, "flag", False, {"why": _DISK}),
    ("skip_cache_check", _W, "flag", False, {"why": _SPEED}),
    ("vae_batch_size", _W, "int", 1, {"why": _SPEED}),
    # 0: decode images inline in the step; >0: one prefetch thread decodes the next batches.
    ("max_data_loader_n_workers", _I, "int", 8, {}),
    ("persistent_data_loader_workers", _W, "flag", False, {"why": _SPEED}),
    ("prior_loss_weight", _I, "float", 1.0, {}),
    ("validation_split", _R, "float", 0.0, {"why": _WHAT}),
    ("validation_seed", _N, "int", None, {}),
    ("validate_every_n_steps", _N, "int", None, {}),
    ("validate_every_n_epochs", _N, "int", None, {}),
    ("max_validation_steps", _N, "int", None, {}),
    # -- network
    ("network_module", _I, "str", None, {"allowed": ("networks.lora",)}),
    ("network_dim", _I, "int", None, {}),
    ("network_alpha", _I, "float", 1.0, {}),
    ("network_dropout", _I, "float", None, {}),
    ("network_args", _I, "str_list", None, {}),
    ("network_train_unet_only", _I, "flag", False, {}),
    ("network_train_text_encoder_only", _I, "flag", False, {}),
    ("network_weights", _I, "path", None, {}),
    ("dim_from_weights", _R, "flag", False, {"why": "it is not implemented; pass --network_dim"}),
    ("scale_weight_norms", _R, "float", None, {"why": _WHAT}),
    ("base_weights", _R, "str_list", None, {"why": _WHAT}),
    ("base_weights_multiplier", _R, "float_list", None, {"why": _WHAT}),
    ("training_comment", _I, "str", None, {}),
    ("no_metadata", _I, "flag", False, {}),
    # -- optimisation
    ("learning_rate", _I, "float", 2e-06, {}),
    ("unet_lr", _I, "float", None, {}),
    ("text_encoder_lr", _I, "float_list", None, {}),
    ("optimizer_type", _I, "str", '', {}),
    ("optimizer_args", _I, "str_list", None, {}),
    ("use_8bit_adam", _I, "flag", False, {}),
    ("use_lion_optimizer", _I, "flag", False, {}),
    ("max_grad_norm", _I, "float", 1.0, {}),
    ("fused_backward_pass", _W, "flag", False, {"why": _SPEED}),
    ("lr_scheduler", _I, "str", 'constant', {}),
    ("lr_warmup_steps", _I, "int_or_float", 0, {}),
    ("lr_scheduler_num_cycles", _I, "int", 1, {}),
    ("lr_scheduler_power", _I, "float", 1.0, {}),
    ("lr_scheduler_type", _R, "str", "", {"why": _CODE}),
    ("lr_scheduler_args", _R, "str_list", None, {"why": _WHAT}),
    ("lr_decay_steps", _R, "int_or_float", 0, {"why": _WHAT}),
    ("lr_scheduler_timescale", _R, "int", None, {"why": _WHAT}),
    ("lr_scheduler_min_lr_ratio", _R, "float", None, {"why": _WHAT}),
    # -- training
    ("max_train_steps", _I, "int", 1600, {}),
    ("max_train_epochs", _I, "int", None, {}),
    ("train_batch_size", _I, "int", 1, {}),
    ("gradient_accumulation_steps", _I, "int", 1, {}),
    ("seed", _I, "int", None, {}),
    ("gradient_checkpointing", _I, "flag", False, {}),
    ("mixed_precision", _I, "str", 'no', {"choices": ("no", "fp16", "bf16")}),
    ("full_fp16", _I, "flag", False, {}),
    ("full_bf16", _I, "flag", False, {}),
    ("fp8_base", _W, "flag", False, {"why": _SPEED}),
    ("fp8_base_unet", _W, "flag", False, {"why": _SPEED}),
    ("cpu_offload_checkpointing", _W, "flag", False, {"why": _SPEED}),
    ("save_precision", _I, "str", None, {"choices": ("float", "fp16", "bf16")}),
    ("clip_skip", _I, "int", None, {}),
    ("max_token_length", _I, "int", None, {"choices": (150, 225)}),
    ("weighted_captions", _R, "flag", False, {"why": _WHAT}),
    ("mem_eff_attn", _W, "flag", False, {"why": _SPEED}),
    ("xformers", _W, "flag", False, {"why": _SPEED}),
    ("sdpa", _I, "flag", False, {}),
    ("torch_compile", _W, "flag", False, {"why": _DIST}),
    ("dynamo_backend", _N, "str", 'inductor', {}),
    ("ddp_timeout", _W, "int", None, {"why": _DIST}),
    ("ddp_gradient_as_bucket_view", _W, "flag", False, {"why": _DIST}),
    ("ddp_static_graph", _W, "flag", False, {"why": _DIST}),
    ("deepspeed", _W, "flag", False, {"why": _DIST}),
    ("zero_stage", _N, "int", 2, {"choices": (0, 1, 2, 3)}),
    ("offload_optimizer_device", _N, "str", None, {"choices": ("cpu", "nvme")}),
    ("offload_optimizer_nvme_path", _R, "str", None, {"why": _DISK}),
    ("offload_param_device", _N, "str", None, {"choices": ("cpu", "nvme")}),
    ("offload_param_nvme_path", _R, "str", None, {"why": _DISK}),
    ("zero3_init_flag", _N, "flag", False, {}),
    ("zero3_save_16bit_model", _N, "flag", False, {}),
    ("fp16_master_weights_and_gradients", _N, "flag", False, {}),
    # -- noise and loss
    ("noise_offset", _I, "float", None, {}),
    ("min_snr_gamma", _I, "float", None, {}),
    ("min_timestep", _I, "int", None, {}),
    ("max_timestep", _I, "int", None, {}),
    ("noise_offset_random_strength", _R, "flag", False, {"why": _WHAT}),
    ("adaptive_noise_scale", _R, "float", None, {"why": _WHAT}),
    ("multires_noise_iterations", _R, "int", None, {"why": _WHAT, "allowed": (0,)}),
    ("multires_noise_discount", _N, "float", 0.3, {}),
    ("ip_noise_gamma", _R, "float", None, {"why": _WHAT, "allowed": (0, 0.0)}),
    ("ip_noise_gamma_random_strength", _R, "flag", False, {"why": _WHAT}),
    ("zero_terminal_snr", _R, "flag", False, {"why": _WHAT}),
    ("debiased_estimation_loss", _R, "flag", False, {"why": _WHAT}),
    ("scale_v_pred_loss_like_noise_pred", _R, "flag", False, {"why": _WHAT}),
    ("v_pred_like_loss", _R, "float", None, {"why": _WHAT, "allowed": (0, 0.0)}),
    ("loss_type", _R, "str", 'l2', {"why": _WHAT, "choices": ("l1", "l2", "huber", "smooth_l1")}),
    ("huber_schedule", _N, "str", 'snr', {"choices": ("constant", "exponential", "snr")}),
    ("huber_c", _N, "float", 0.1, {}),
    ("huber_scale", _N, "float", 1.0, {}),
    # -- saving, resume
    ("output_dir", _I, "path", None, {}),
    ("output_name", _I, "str", None, {}),
    ("save_model_as", _I, "str", 'safetensors', {"choices": ("ckpt", "pt", "safetensors")}),
    ("save_every_n_epochs", _I, "int", None, {}),
    ("save_every_n_steps", _I, "int", None, {}),
    ("save_n_epoch_ratio", _W, "int", None, {"why": _SAVE}),
    ("save_last_n_epochs", _W, "int", None, {"why": _SAVE}),
    ("save_last_n_epochs_state", _W, "int", None, {"why": _SAVE}),
    ("save_last_n_steps", _W, "int", None, {"why": _SAVE}),
    ("save_last_n_steps_state", _W, "int", None, {"why": _SAVE}),
    ("save_state", _I, "flag", False, {}),
    ("save_state_on_train_end", _I, "flag", False, {}),
    ("resume", _I, "path", None, {}),
    ("initial_epoch", _R, "int", None, {"why": _WHAT}),
    ("initial_step", _R, "int", None, {"why": _WHAT}),
    ("skip_until_initial_step", _R, "flag", False, {"why": _WHAT}),
    ("huggingface_repo_id", _R, "str", None, {"why": _EGRESS}),
    ("huggingface_repo_type", _R, "str", None, {"why": _EGRESS}),
    ("huggingface_path_in_repo", _R, "str", None, {"why": _EGRESS}),
    ("huggingface_token", _R, "str", None, {"why": _EGRESS}),
    ("huggingface_repo_visibility", _R, "str", None, {"why": _EGRESS}),
    ("save_state_to_huggingface", _R, "flag", False, {"why": _EGRESS}),
    ("resume_from_huggingface", _R, "flag", False, {"why": _EGRESS}),
    ("async_upload", _R, "flag", False, {"why": _EGRESS}),
    # -- samples
    ("sample_every_n_steps", _W, "int", None, {"why": _SAMPLE}),
    ("sample_every_n_epochs", _W, "int", None, {"why": _SAMPLE}),
    ("sample_at_first", _W, "flag", False, {"why": _SAMPLE}),
    ("sample_prompts", _W, "str", None, {"why": _SAMPLE}),
    ("sample_sampler", _N, "str", 'ddim', {"choices": _SAMPLERS}),
    # -- logging
    ("logging_dir", _I, "path", None, {}),
    ("log_with", _I, "str", None, {"choices": ("tensorboard", "wandb", "all"),
                                   "allowed": ("tensorboard",)}),
    ("log_prefix", _I, "str", None, {}),
    ("log_tracker_name", _W, "str", None, {"why": "tracker names are not recorded"}),
    ("log_tracker_config", _R, "str", None, {"why": _EGRESS}),
    ("wandb_run_name", _N, "str", None, {}),
    ("wandb_api_key", _R, "str", None, {"why": _EGRESS}),
    ("log_config", _W, "flag", False, {"why": _LOG_CONFIG}),
    ("console_log_level", _W, "str", None, {"why": _LOGGING, "choices": _LOG_LEVELS}),
    ("console_log_file", _R, "str", None, {"why": _DISK}),
    ("console_log_simple", _W, "flag", False, {"why": _LOGGING}),
    # -- config and model card
    ("config_file", _I, "str", None, {}),
    ("output_config", _R, "flag", False, {"why": "it is not implemented"}),
    ("metadata_title", _I, "str", None, {}),
    ("metadata_author", _I, "str", None, {}),
    ("metadata_description", _I, "str", None, {}),
    ("metadata_license", _I, "str", None, {}),
    ("metadata_tags", _I, "str", None, {}),
    ("metadata_usage_hint", _I, "str", None, {}),
    ("metadata_thumbnail", _I, "str", None, {}),
    ("metadata_merged_from", _I, "str", None, {}),
    ("metadata_trigger_phrase", _I, "str", None, {}),
    ("metadata_preprocessor", _I, "str", None, {}),
    ("metadata_is_negative_embedding", _I, "str", None, {}),
    # -- secure-trainer's own options
    ("config", _O, "path", None, {}),  # a lora-scripts YAML run file (kohya/lora_scripts.py)
    ("metadata", _O, "str", None, {"choices": ("redacted", "full", "none")}),
    ("dp", _O, "flag", False, {}),
    ("dp_target_epsilon", _O, "float", None, {}),
    ("dp_delta", _O, "float", None, {}),
    ("dp_max_grad_norm", _O, "float", None, {}),
    ("dp_noise_multiplier", _O, "float", None, {}),
    ("dp_accountant", _O, "str", None, {"choices": ("rdp", "prv")}),
)
# fmt: on


def _build() -> dict[str, KohyaOption]:
    table: dict[str, KohyaOption] = {}
    for name, kind, value, default, extra in _ROWS:
        choices = extra.get("choices")
        allowed = extra.get("allowed", ())
        table[name] = KohyaOption(
            name=name,
            kind=kind,
            value=value,
            default=default,
            choices=tuple(choices) if isinstance(choices, tuple) else None,
            why=str(extra.get("why", "")),
            allowed=tuple(allowed) if isinstance(allowed, tuple) else (),
        )
    return table


OPTIONS: Mapping[str, KohyaOption] = _build()

SCHEDULERS: tuple[str, ...] = _SCHEDULERS
KNOWN_UNSUPPORTED_SCHEDULERS: tuple[str, ...] = _UNSUPPORTED_SCHEDULERS

# optimizer_type values we accept (matched case-insensitively) → canonical spelling.
# coupling: secure_trainer/train/optim.py builds exactly these.
OPTIMIZERS: Mapping[str, str] = {
    name.lower(): name
    for name in ("AdamW", "AdamW8bit", "Lion", "Prodigy", "SGDNesterov", "AdaFactor")
}
# Known to sd-scripts but not built here: a clear error instead of "unknown".
KNOWN_UNSUPPORTED_OPTIMIZERS: frozenset[str] = frozenset(
    n.lower()
    for n in (
        "PagedAdamW",
        "PagedAdamW8bit",
        "PagedAdamW32bit",
        "Lion8bit",
        "PagedLion8bit",
        "SGDNesterov8bit",
        "DAdaptation",
        "DAdaptAdamPreprint",
        "DAdaptAdaGrad",
        "DAdaptAdam",
        "DAdaptAdan",
        "DAdaptAdanIP",
        "DAdaptLion",
        "DAdaptSGD",
        "RAdamScheduleFree",
        "AdamWScheduleFree",
        "SGDScheduleFree",
    )
)

# networks.lora `--network_args` keys: implemented, and known-but-rejected.
NETWORK_ARGS_IMPLEMENTED: frozenset[str] = frozenset({"conv_dim", "conv_alpha"})
NETWORK_ARGS_REJECTED: frozenset[str] = frozenset(
    {
        "rank_dropout",
        "module_dropout",
        "block_dims",
        "block_alphas",
        "conv_block_dims",
        "conv_block_alphas",
        "down_lr_weight",
        "mid_lr_weight",
        "up_lr_weight",
        "block_lr_zero_threshold",
        "loraplus_lr_ratio",
        "loraplus_unet_lr_ratio",
        "loraplus_text_encoder_lr_ratio",
    }
)


def is_default(option: KohyaOption, value: object) -> bool:
    """True when `value` leaves the option at Kohya's default (None, False, "" count as unset)."""
    if value is None or value is False or value == "" or value == []:
        return True
    return bool(value == option.default)
