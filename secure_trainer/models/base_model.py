"""Shared pieces of model loading: the loaded-model record, quiet HF imports, the DDPM training
scheduler, SDPA attention, and the safetensors weight files of one diffusers component folder.

Used by loading.py (SD1.x) and sdxl_loading.py. Never downloads, never reads a pickle, never
puts a path or a foreign exception text into an error message.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from secure_trainer.errors import DataRejected
from secure_trainer.models.families import SD1_VAE_SCALE, Family
from secure_trainer.models.safetensors_check import PICKLE_MESSAGE, PICKLE_SUFFIXES, read_header

ModelFormat = Literal["diffusers-safetensors", "single-file-safetensors"]


@dataclass
class BaseModel:
    """The loaded parts of an SD1.x or SDXL model, on CPU, in eval mode, base weights frozen by
    the caller."""

    unet: Any
    """diffusers UNet2DConditionModel."""
    text_encoder: Any
    """transformers CLIPTextModel (sdpa attention)."""
    tokenizer: Any
    """transformers CLIPTokenizer, model_max_length 77."""
    vae: Any
    """diffusers AutoencoderKL."""
    noise_scheduler: Any
    """diffusers DDPMScheduler with SD1 betas (scaled_linear 0.00085–0.012, 1000 steps)."""
    model_format: ModelFormat
    weight_files: tuple[Path, ...] = field(repr=False)
    vae_scale_factor: float = SD1_VAE_SCALE
    family: Family = "sd15"
    text_encoder_2: Any = None
    """SDXL: transformers CLIPTextModelWithProjection (OpenCLIP ViT-bigG); None for SD1.x."""
    tokenizer_2: Any = None
    """SDXL: the second CLIPTokenizer (pads with "!"); None for SD1.x."""

    @cached_property
    def sha256(self) -> str:
        """Hex sha256 identifying the weights (computed on first use).

        Single file: sha256 of the file bytes. Diffusers folder: sha256 over the sorted
        `<component>/<file name>:<file sha256>` lines of the weight files that were loaded.
        """
        if self.model_format == "single-file-safetensors" and len(self.weight_files) == 1:
            return file_sha256(self.weight_files[0])
        lines = sorted(f"{p.parent.name}/{p.name}:{file_sha256(p)}" for p in self.weight_files)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def quiet_hf() -> Iterator[None]:
    """Silence diffusers/transformers loggers, progress bars and Python warnings, then restore."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    prev = (dlog.get_verbosity(), tlog.get_verbosity(), dlog.is_progress_bar_enabled(),
            tlog.is_progress_bar_enabled())
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        dlog.set_verbosity(prev[0])
        tlog.set_verbosity(prev[1])
        if prev[2]:
            dlog.enable_progress_bar()
        if prev[3]:
            tlog.enable_progress_bar()


def make_noise_scheduler() -> Any:
    """Kohya's training scheduler for SD1.x: DDPM, scaled_linear 0.00085–0.012, 1000 steps."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", clip_sample=False)


def use_sdpa(unet: Any, vae: Any, text_encoder: Any) -> None:
    """Put every attention of the three modules on PyTorch SDPA; TrainingError-free, checks only.

    Raises DataRejected if the text encoder cannot run with sdpa attention.
    """
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0())
    vae.set_attn_processor(AttnProcessor2_0())
    use_sdpa_text(text_encoder)


def use_sdpa_text(text_encoder: Any) -> None:
    """Put a transformers CLIP text encoder on SDPA attention. Raises DataRejected."""
    if getattr(text_encoder.config, "_attn_implementation", None) != "sdpa":
        try:
            text_encoder.set_attn_implementation("sdpa")
        except (ValueError, AttributeError):
            raise DataRejected("the text encoder cannot use SDPA attention") from None


def component_weights(folder: Path) -> tuple[list[Path], str | None]:
    """Safetensors weight files of one component folder and the variant to load.

    Raises DataRejected for a missing folder, pickle-only weights or no weights at all.
    """
    if not folder.is_dir():
        raise DataRejected(f"diffusers folder lacks its {folder.name}/ component")
    files = [p for p in folder.iterdir() if p.is_file()]
    safes = sorted(p for p in files if p.name.endswith(".safetensors"))
    pickles = [p for p in files if p.suffix.lower() in PICKLE_SUFFIXES]
    if not safes:
        if pickles:
            raise DataRejected(PICKLE_MESSAGE)
        raise DataRejected(f"diffusers folder has no weights for {folder.name}/")
    for weight in safes:
        read_header(weight)
    plain = [p for p in safes if p.name.count(".") == 1 or "-of-" in p.name]
    if plain:
        return plain, None
    # Only variant files (e.g. model.fp16.safetensors): load that variant.
    variant = safes[0].name.split(".")[-2]
    return [p for p in safes if p.name.split(".")[-2] == variant], variant
