"""Typed training settings: the narrow, frozen view every trainer component receives.

`config.py` builds these from Kohya flags / `--config_file` / `--dataset_config`; nothing
downstream sees an argparse namespace or a dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

MixedPrecision = Literal["no", "fp16", "bf16"]
SavePrecision = Literal["float", "fp16", "bf16"]


class MetadataMode(str, Enum):
    """How much `ss_*` metadata the exported LoRA carries."""

    REDACTED = "redacted"  # default: nothing that names or counts the private data
    FULL = "full"  # Kohya's full set, only when asked
    NONE = "none"  # Kohya's --no_metadata minimal set


@dataclass(frozen=True)
class SubsetSettings:
    """One image folder (Kohya subset) after the subset > dataset > general > CLI lookup."""

    image_dir: Path
    num_repeats: int = 1
    is_reg: bool = False
    class_tokens: str | None = None
    caption_extension: str = ".caption"
    shuffle_caption: bool = False
    caption_separator: str = ","
    keep_tokens: int = 0
    keep_tokens_separator: str = ""
    secondary_separator: str | None = None
    enable_wildcard: bool = False
    caption_prefix: str | None = None
    caption_suffix: str | None = None
    caption_dropout_rate: float = 0.0
    caption_dropout_every_n_epochs: int = 0
    caption_tag_dropout_rate: float = 0.0
    token_warmup_min: int = 1
    token_warmup_step: float = 0
    flip_aug: bool = False
    color_aug: bool = False
    random_crop: bool = False
    alpha_mask: bool = False
    resize_interpolation: str | None = None  # None ⇒ area when shrinking both sides, else lanczos
    caption_csv: Path | None = None  # lora-scripts `metadata_path`: captions from one CSV


@dataclass(frozen=True)
class DatasetSettings:
    """One `[[datasets]]` group: a resolution/batch/bucket setting and its subsets."""

    subsets: tuple[SubsetSettings, ...]
    resolution: tuple[int, int]  # (width, height)
    batch_size: int = 1
    enable_bucket: bool = False
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False
    network_multiplier: float = 1.0


@dataclass(frozen=True)
class NetworkSettings:
    """LoRA network (Kohya `networks.lora`)."""

    dim: int = 4
    alpha: float = 1.0
    conv_dim: int | None = None
    conv_alpha: float | None = None
    train_unet_only: bool = False
    train_text_encoder_only: bool = False
    network_weights: Path | None = None
    dropout: float | None = None


@dataclass(frozen=True)
class OptimizerSettings:
    """Optimizer and LR schedule, Kohya names and defaults."""

    learning_rate: float = 2e-6
    unet_lr: float | None = None
    text_encoder_lr: float | None = None
    text_encoder_lr_2: float | None = None  # SDXL: second value of --text_encoder_lr (OpenCLIP-bigG)
    optimizer_type: str = "AdamW"
    optimizer_args: tuple[tuple[str, object], ...] = ()
    lr_scheduler: str = "constant"
    lr_warmup_steps: float = 0
    lr_scheduler_num_cycles: int = 1
    lr_scheduler_power: float = 1.0
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class DPSettings:
    """Differential privacy (DP-SGD via Opacus) on the LoRA parameters."""

    enabled: bool = False
    target_epsilon: float | None = None
    delta: float | None = None  # None ⇒ 1/N²
    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    accountant: Literal["rdp", "prv"] = "rdp"


@dataclass(frozen=True)
class TrainSettings:
    """Everything one training run needs, validated."""

    pretrained_model_name_or_path: Path
    datasets: tuple[DatasetSettings, ...]
    output_dir: Path
    output_name: str = "last"
    network: NetworkSettings = field(default_factory=NetworkSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    dp: DPSettings = field(default_factory=DPSettings)
    max_train_steps: int = 1600
    max_train_epochs: int | None = None
    gradient_accumulation_steps: int = 1
    mixed_precision: MixedPrecision = "no"
    save_precision: SavePrecision | None = None
    full_fp16: bool = False
    full_bf16: bool = False
    # Kohya's --no_half_vae: keep the VAE float32 under bf16 (SD1.x; SDXL's VAE is always float32).
    no_half_vae: bool = False
    gradient_checkpointing: bool = False
    cache_latents: bool = False
    noise_offset: float | None = None
    min_snr_gamma: float | None = None
    v_parameterization: bool = False
    clip_skip: int | None = None
    max_token_length: int | None = None
    prior_loss_weight: float = 1.0
    seed: int | None = None
    save_every_n_epochs: int | None = None
    save_every_n_steps: int | None = None
    save_state: bool = False
    resume: Path | None = None
    logging_dir: Path | None = None
    log_prefix: str | None = None
    metadata: MetadataMode = MetadataMode.REDACTED
    training_comment: str | None = None
    vae: Path | None = None
    sdpa: bool = True
    max_data_loader_n_workers: int = 8  # Kohya's default; 0 = no input prefetch thread
    min_timestep: int = 0
    max_timestep: int = 1000
    save_state_on_train_end: bool = False
    sdxl: bool = False  # sdxl_train_network.py: the base model must be SDXL
    v2: bool = False  # Kohya --v2 (SD2.x); always refused against the detected family
    cache_text_encoder_outputs: bool = False  # SDXL, frozen encoders only: in-memory cache
    # --cache_text_encoder_outputs_to_disk: also one file per caption in this folder (under
    # output_dir; data/te_cache.py), reused by the next run when its key still matches.
    text_encoder_cache_dir: Path | None = None
    # Kohya `--metadata_title|author|...` (modelspec.*), as (key without prefix, value) pairs.
    model_card: tuple[tuple[str, str], ...] = ()
