"""Load an SDXL base model from safetensors only: a diffusers folder or an SGM/LDM single file.

Both text encoders (CLIP-L and OpenCLIP-bigG with projection) and both tokenizers are loaded;
the VAE is always float32 (SDXL's VAE produces NaNs in fp16 — Kohya's --no_half_vae).
Local files only, every weight file's safetensors header checked first, pickles refused.
Never puts a model path or a foreign exception text into an error message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from secure_trainer.errors import DataRejected
from secure_trainer.models.base_model import BaseModel, component_weights, make_noise_scheduler
from secure_trainer.models.safetensors_check import refuse_pickle, validate_file

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
NOT_SDXL = "the base model is not a supported SDXL architecture"


def load_sdxl(path: Path, *, dtype: torch.dtype, tokenizer: Path | None) -> BaseModel:
    """Load an SDXL model (folder or single file); the caller applies --vae, SDPA and eval.

    Raises DataRejected for pickles, malformed files, missing/mismatched weights;
    ConfigError when a single file needs a tokenizer and none is found.
    """
    path = Path(path)
    if path.is_dir():
        base = _load_dir(path, dtype)
    else:
        refuse_pickle(path)
        from secure_trainer.models.sdxl_single_file import load_sdxl_single_file

        parts, files = load_sdxl_single_file(validate_file(path), path, dtype, tokenizer)
        base = BaseModel(unet=parts.unet, text_encoder=parts.text_encoder,
                         tokenizer=parts.tokenizer, vae=parts.vae,
                         noise_scheduler=make_noise_scheduler(),
                         model_format="single-file-safetensors", weight_files=files,
                         family="sdxl", text_encoder_2=parts.text_encoder_2,
                         tokenizer_2=parts.tokenizer_2)
    check_sdxl(base)
    return base


def check_sdxl(base: BaseModel) -> None:
    """The three parts fit together as SDXL: text_time conditioning, context = TE1 + TE2
    widths, pooled + 6 size embeddings into the added-embedding MLP. Raises DataRejected."""
    ucfg = base.unet.config
    te1, te2 = base.text_encoder.config, base.text_encoder_2.config
    time_dim = ucfg.get("addition_time_embed_dim") or 0
    if (ucfg.get("addition_embed_type") != "text_time"
            or ucfg.get("cross_attention_dim") != te1.hidden_size + te2.hidden_size
            or ucfg.get("projection_class_embeddings_input_dim") != te2.projection_dim + 6 * time_dim):
        raise DataRejected(NOT_SDXL)


def _load_dir(path: Path, dtype: torch.dtype) -> BaseModel:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    weights = {name: component_weights(path / name) for name in COMPONENTS}
    common: dict[str, Any] = {"use_safetensors": True, "local_files_only": True}
    try:
        unet = UNet2DConditionModel.from_pretrained(
            path, subfolder="unet", torch_dtype=dtype, variant=weights["unet"][1], **common)
        vae = AutoencoderKL.from_pretrained(
            path, subfolder="vae", torch_dtype=torch.float32, variant=weights["vae"][1], **common)
        te1 = CLIPTextModel.from_pretrained(
            path, subfolder="text_encoder", dtype=dtype, attn_implementation="sdpa",
            variant=weights["text_encoder"][1], **common)
        te2 = CLIPTextModelWithProjection.from_pretrained(
            path, subfolder="text_encoder_2", dtype=dtype, attn_implementation="sdpa",
            variant=weights["text_encoder_2"][1], **common)
        tok1 = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True)
        tok2 = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer_2", local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError):
        # SECURITY: the foreign message can carry local paths; say what, not where.
        raise DataRejected("could not load the diffusers folder (incomplete or not SDXL)") from None
    files = tuple(p for name in COMPONENTS for p in weights[name][0])
    return BaseModel(unet=unet, text_encoder=te1, tokenizer=tok1, vae=vae,
                     noise_scheduler=make_noise_scheduler(), model_format="diffusers-safetensors",
                     weight_files=files, family="sdxl", text_encoder_2=te2, tokenizer_2=tok2)
