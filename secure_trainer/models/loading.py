"""Load an SD1.x base model from safetensors only: a diffusers folder or an LDM single file.

Pickles (.ckpt/.pt/.pth/.bin, zip/pickle magic) are refused before anything reads them, every
safetensors header is validated first, nothing is downloaded (local files only), attention
runs through PyTorch SDPA, and diffusers/transformers print no progress bars or warnings.
Never puts a model path or a foreign exception text into an error message.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import torch

from secure_trainer.errors import DataRejected
from secure_trainer.models.safetensors_check import (
    PICKLE_MESSAGE,
    PICKLE_SUFFIXES,
    read_header,
    refuse_pickle,
    validate_file,
)

ModelFormat = Literal["diffusers-safetensors", "single-file-safetensors"]
SD1_VAE_SCALE = 0.18215
_COMPONENTS = ("unet", "vae", "text_encoder")
_NOT_SD1 = "only SD1.x base models are supported (SD2.x and SDXL are not)"


@dataclass
class BaseModel:
    """The loaded parts of an SD1.x model, on CPU, in eval mode, base weights frozen by the caller."""

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

    @cached_property
    def sha256(self) -> str:
        """Hex sha256 identifying the weights (computed on first use).

        Single file: sha256 of the file bytes. Diffusers folder: sha256 over the sorted
        `<component>/<file name>:<file sha256>` lines of the weight files that were loaded.
        """
        if self.model_format == "single-file-safetensors" and len(self.weight_files) == 1:
            return _file_sha256(self.weight_files[0])
        lines = sorted(f"{p.parent.name}/{p.name}:{_file_sha256(p)}" for p in self.weight_files)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
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
    if getattr(text_encoder.config, "_attn_implementation", None) != "sdpa":
        try:
            text_encoder.set_attn_implementation("sdpa")
        except (ValueError, AttributeError):
            raise DataRejected("the text encoder cannot use SDPA attention") from None


def load_base_model(path: Path, *, vae: Path | None = None, dtype: torch.dtype = torch.float32,
                    tokenizer: Path | None = None) -> BaseModel:
    """Load an SD1.x base model from a diffusers folder or an LDM single-file `.safetensors`.

    `vae` optionally replaces the VAE (diffusers folder or `.safetensors`, same architecture);
    `tokenizer` is a folder with vocab.json + merges.txt, needed only for single files that do
    not embed one and when `openai/clip-vit-large-patch14` is not in the offline HF cache.
    Raises DataRejected (exit 8) for pickles, malformed safetensors, missing/mismatched weights
    or non-SD1 models; ConfigError (exit 2) when a single file needs a tokenizer and none is found.
    """
    path = Path(path)
    with quiet_hf():
        if path.is_dir():
            base = _load_diffusers_dir(path, dtype)
        elif path.is_file():
            refuse_pickle(path)
            from secure_trainer.models.single_file import load_single_file

            parts, files = load_single_file(validate_file(path), path, dtype, tokenizer)
            base = BaseModel(unet=parts.unet, text_encoder=parts.text_encoder,
                             tokenizer=parts.tokenizer, vae=parts.vae,
                             noise_scheduler=make_noise_scheduler(),
                             model_format="single-file-safetensors", weight_files=files)
        else:
            raise DataRejected("base model not found: pass a diffusers folder or a .safetensors file")
        if vae is not None:
            base.vae, vae_files = _load_vae_override(Path(vae), base.vae, dtype)
            base.weight_files = base.weight_files + vae_files
        _check_sd1(base)
        use_sdpa(base.unet, base.vae, base.text_encoder)
        base.vae_scale_factor = float(getattr(base.vae.config, "scaling_factor", SD1_VAE_SCALE))
        base.tokenizer.model_max_length = 77
        for module in (base.unet, base.vae, base.text_encoder):
            module.eval()
    return base


def _check_sd1(base: BaseModel) -> None:
    ucfg, tcfg = base.unet.config, base.text_encoder.config
    if (ucfg.get("use_linear_projection") or isinstance(ucfg.get("attention_head_dim"), (list, tuple))
            or ucfg.get("addition_embed_type") is not None
            or ucfg.get("cross_attention_dim") != tcfg.hidden_size):
        raise DataRejected(_NOT_SD1)


def _component_weights(folder: Path) -> tuple[list[Path], str | None]:
    """Safetensors weight files of one component folder and the variant to load, or reject."""
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


def _load_diffusers_dir(path: Path, dtype: torch.dtype) -> BaseModel:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    index = path / "model_index.json"
    if not index.is_file():
        raise DataRejected("not a diffusers folder (model_index.json missing)")
    try:
        components = json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataRejected("model_index.json is not valid JSON") from None
    if not isinstance(components, dict) or "text_encoder_2" in components:
        raise DataRejected(_NOT_SD1)
    weights: dict[str, tuple[list[Path], str | None]] = {
        name: _component_weights(path / name) for name in _COMPONENTS}
    common: dict[str, Any] = {"use_safetensors": True, "local_files_only": True}
    try:
        unet = UNet2DConditionModel.from_pretrained(
            path, subfolder="unet", torch_dtype=dtype, variant=weights["unet"][1], **common)
        vae = AutoencoderKL.from_pretrained(
            path, subfolder="vae", torch_dtype=dtype, variant=weights["vae"][1], **common)
        text_encoder = CLIPTextModel.from_pretrained(
            path, subfolder="text_encoder", dtype=dtype, attn_implementation="sdpa",
            variant=weights["text_encoder"][1], **common)
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError):
        # SECURITY: the foreign message can carry local paths; say what, not where.
        raise DataRejected("could not load the diffusers folder (incomplete or not SD1.x)") from None
    files = tuple(p for name in _COMPONENTS for p in weights[name][0])
    return BaseModel(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae,
                     noise_scheduler=make_noise_scheduler(), model_format="diffusers-safetensors",
                     weight_files=files)


def _load_vae_override(path: Path, base_vae: Any, dtype: torch.dtype) -> tuple[Any, tuple[Path, ...]]:
    """A replacement VAE (`--vae`): diffusers folder or safetensors file of the same architecture."""
    from diffusers import AutoencoderKL

    if path.is_dir():
        sub = "vae" if (path / "vae").is_dir() else None
        files, variant = _component_weights(path / sub if sub else path)
        try:
            vae = AutoencoderKL.from_pretrained(path, subfolder=sub, torch_dtype=dtype, variant=variant,
                                                use_safetensors=True, local_files_only=True)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError):
            raise DataRejected("could not load the VAE folder") from None
        return vae, tuple(files)
    if not path.is_file():
        raise DataRejected("VAE not found: pass a diffusers folder or a .safetensors file")
    from secure_trainer.models.single_file import load_vae_file

    return load_vae_file(validate_file(path), path, dict(base_vae.config), dtype), (path,)
