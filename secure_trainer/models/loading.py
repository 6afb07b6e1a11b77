"""Load an SD1.x or SDXL base model from safetensors only: a diffusers folder or an LDM single file.

Pickles (.ckpt/.pt/.pth/.bin, zip/pickle magic) are refused before anything reads them, every
safetensors header is validated first, nothing is downloaded (local files only), attention
runs through PyTorch SDPA, and diffusers/transformers print no progress bars or warnings.
Never puts a model path or a foreign exception text into an error message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from secure_trainer.errors import DataRejected
from secure_trainer.models.base_model import (
    BaseModel,
    ModelFormat,
    component_weights,
    make_noise_scheduler,
    quiet_hf,
    use_sdpa,
    use_sdpa_text,
)
from secure_trainer.models.detect import detect_family
from secure_trainer.models.families import SD1_VAE_SCALE
from secure_trainer.models.safetensors_check import refuse_pickle, validate_file

__all__ = ["SD1_VAE_SCALE", "BaseModel", "ModelFormat", "load_base_model", "make_noise_scheduler",
           "quiet_hf", "use_sdpa"]

_COMPONENTS = ("unet", "vae", "text_encoder")
_NOT_SD1 = "only SD1.x base models are supported (SD2.x and SDXL are not)"


def load_base_model(path: Path, *, vae: Path | None = None, dtype: torch.dtype = torch.float32,
                    tokenizer: Path | None = None) -> BaseModel:
    """Load an SD1.x or SDXL base model from a diffusers folder or an LDM single-file `.safetensors`.

    The family is detected from the layout (models/detect.py); SDXL loads both text encoders
    and tokenizers and keeps its VAE in float32.

    `vae` optionally replaces the VAE (diffusers folder or `.safetensors`, same architecture);
    `tokenizer` is a folder with vocab.json + merges.txt, needed only for single files that do
    not embed one and when `openai/clip-vit-large-patch14` is not in the offline HF cache.
    Raises DataRejected (exit 8) for pickles, malformed safetensors, missing/mismatched weights
    or non-SD1 models; ConfigError (exit 2) when a single file needs a tokenizer and none is found.
    """
    path = Path(path)
    family = detect_family(path)
    with quiet_hf():
        if family == "sdxl":
            from secure_trainer.models.sdxl_loading import load_sdxl

            base = load_sdxl(path, dtype=dtype, tokenizer=tokenizer)
        elif path.is_dir():
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
            vae_dtype = torch.float32 if family == "sdxl" else dtype
            base.vae, vae_files = _load_vae_override(Path(vae), base.vae, vae_dtype)
            base.weight_files = base.weight_files + vae_files
        if family == "sd15":
            _check_sd1(base)
        use_sdpa(base.unet, base.vae, base.text_encoder)
        base.vae_scale_factor = float(getattr(base.vae.config, "scaling_factor", SD1_VAE_SCALE))
        for tok in (base.tokenizer, base.tokenizer_2):
            if tok is not None:
                tok.model_max_length = 77
        for module in (base.unet, base.vae, base.text_encoder, base.text_encoder_2):
            if module is not None:
                module.eval()
        if base.text_encoder_2 is not None:
            use_sdpa_text(base.text_encoder_2)
    return base


def _check_sd1(base: BaseModel) -> None:
    ucfg, tcfg = base.unet.config, base.text_encoder.config
    if (ucfg.get("use_linear_projection") or isinstance(ucfg.get("attention_head_dim"), (list, tuple))
            or ucfg.get("addition_embed_type") is not None
            or ucfg.get("cross_attention_dim") != tcfg.hidden_size):
        raise DataRejected(_NOT_SD1)


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
        name: component_weights(path / name) for name in _COMPONENTS}
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
        files, variant = component_weights(path / sub if sub else path)
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
