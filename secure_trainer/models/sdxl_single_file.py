"""Turn a validated SGM/LDM-layout SDXL single-file `.safetensors` into diffusers/transformers modules.

Tensor groups: `model.diffusion_model.` (UNet), `first_stage_model.` (VAE),
`conditioner.embedders.0.transformer.` (CLIP-L, transformers layout) and
`conditioner.embedders.1.model.` (OpenCLIP-bigG layout, converted with diffusers' OpenCLIP
table). Configs come from our `secure_trainer.*` metadata or the bundled SDXL configs. Modules
are built on the meta device and filled strictly, so a file that does not fit is refused before
any large allocation. Never downloads, never puts a path in an error message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from secure_trainer.errors import DataRejected
from secure_trainer.models.families import (
    FORMAT_SDXL_LDM,
    META_TEXT_ENCODER,
    META_TEXT_ENCODER_2,
    META_UNET,
    META_VAE,
    sdxl_config,
)
from secure_trainer.models.safetensors_check import SafetensorsHeader
from secure_trainer.models.single_file import embedded_configs, fill_module, tokenizer_from

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TE1_PREFIX = "conditioner.embedders.0.transformer."
TE2_PREFIX = "conditioner.embedders.1.model."
TOKENIZER_2_PAD = "!"
_META = {"unet": META_UNET, "vae": META_VAE, "text_encoder": META_TEXT_ENCODER,
         "text_encoder_2": META_TEXT_ENCODER_2}
_MISMATCH = "the checkpoint does not match the SDXL architecture (missing or unexpected weights)"
_MAX_POSITIONS = 1024


@dataclass
class SdxlParts:
    """Modules built from one SDXL single-file checkpoint."""

    unet: Any
    vae: Any
    text_encoder: Any
    text_encoder_2: Any
    tokenizer: Any
    tokenizer_2: Any


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in cfg.items()
           if not k.startswith("_") and k not in ("architectures", "model_type")}
    if not 0 < int(out.get("max_position_embeddings", 77)) <= _MAX_POSITIONS:
        raise DataRejected("malformed secure_trainer config metadata in the checkpoint")
    return out


def _te1_state(state: dict[str, torch.Tensor], flattened: bool) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(TE1_PREFIX) or key.endswith("position_ids"):
            continue  # position_ids: a non-persistent buffer in current transformers
        name = key[len(TE1_PREFIX):]
        out[name[len("text_model."):] if flattened else name] = value
    return out


def second_tokenizer(tokenizer: Any) -> Any:
    """SDXL's second tokenizer: the same vocabulary, padding with "!" instead of EOS."""
    import copy

    tok2 = copy.deepcopy(tokenizer)
    tok2.pad_token = TOKENIZER_2_PAD
    return tok2


def load_sdxl_single_file(header: SafetensorsHeader, path: Path, dtype: torch.dtype,
                          tokenizer_dir: Path | None) -> tuple[SdxlParts, tuple[Path, ...]]:
    """Build UNet, VAE (float32), both text encoders and tokenizers from a validated SDXL file.

    Raises DataRejected for missing parts, malformed metadata or weights that do not fit;
    ConfigError if no tokenizer can be found.
    """
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    keys = set(header.tensors)
    for prefix in (UNET_PREFIX, VAE_PREFIX, TE1_PREFIX, TE2_PREFIX):
        if not any(k.startswith(prefix) for k in keys):
            raise DataRejected("not a complete SDXL single-file checkpoint (UNet, VAE or a text "
                               "encoder is missing)")
    cfgs = embedded_configs(header.metadata, fmt=FORMAT_SDXL_LDM, keys=_META,
                            bundled=sdxl_config)
    te1_cfg, te2_cfg = _text_config(cfgs["text_encoder"]), _text_config(cfgs["text_encoder_2"])
    try:
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(cfgs["unet"])
            vae = AutoencoderKL.from_config(cfgs["vae"])
            te1 = CLIPTextModel(CLIPTextConfig(**te1_cfg))
            te2 = CLIPTextModelWithProjection(CLIPTextConfig(**te2_cfg))
    except (TypeError, ValueError, KeyError):
        raise DataRejected("malformed model config for the checkpoint") from None
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError):
        raise DataRejected("could not read the checkpoint's tensors") from None
    try:
        unet_sd = convert_ldm_unet_checkpoint(state, cfgs["unet"])
        vae_sd = convert_ldm_vae_checkpoint(state, cfgs["vae"])
        te2_sd = convert_open_clip_checkpoint(te2, state, prefix=TE2_PREFIX)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise DataRejected(_MISMATCH) from None
    te1_sd = _te1_state(state, flattened=not hasattr(te1, "text_model"))
    te2_sd = {k: v for k, v in te2_sd.items() if not k.endswith("position_ids")}
    del state
    parts = SdxlParts(
        unet=fill_module(unet, unet_sd, dtype),
        # SDXL's VAE overflows in fp16 (Kohya's --no_half_vae): always float32.
        vae=fill_module(vae, vae_sd, torch.float32),
        text_encoder=fill_module(te1, te1_sd, dtype),
        text_encoder_2=fill_module(te2, te2_sd, dtype),
        tokenizer=None, tokenizer_2=None)
    # Resolved last, so a file that does not fit is reported as such, not as a tokenizer problem.
    parts.tokenizer = tokenizer_from(header.metadata, tokenizer_dir)
    parts.tokenizer_2 = second_tokenizer(parts.tokenizer)
    return parts, (path,)
