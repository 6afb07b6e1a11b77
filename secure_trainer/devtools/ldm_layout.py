"""Rename diffusers SD1.x/SDXL state dicts into the original LDM single-file key layout.

Used only to write the development single-file checkpoint, so that the loader's LDM → diffusers
path is exercised on a file with real key names. Never reads or writes files itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from secure_trainer.models.ldm_names import unet_key

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

_VAE_ATTN = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def vae_key(key: str, *, num_blocks: int) -> str:
    """LDM name of one diffusers AutoencoderKL parameter (the decoder's blocks are reversed)."""
    swaps = {"conv_norm_out.": "norm_out.", "mid_block.resnets.0.": "mid.block_1.",
             "mid_block.resnets.1.": "mid.block_2.", "mid_block.attentions.0.": "mid.attn_1."}
    for old, new in swaps.items():
        key = key.replace(old, new)
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        key = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
    elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
        key = f"encoder.down.{m[1]}.downsample.{m[2]}"
    elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        key = f"decoder.up.{num_blocks - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
    elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
        key = f"decoder.up.{num_blocks - 1 - int(m[1])}.upsample.{m[2]}"
    key = key.replace(".conv_shortcut.", ".nin_shortcut.")
    if ".mid.attn_1." in key:
        layer, _, param = key.rpartition(".")
        head, _, sub = layer.partition(".mid.attn_1.")
        key = f"{head}.mid.attn_1.{_VAE_ATTN[sub]}.{param}"
    return key


def to_ldm_state_dict(
    unet: Mapping[str, torch.Tensor],
    vae: Mapping[str, torch.Tensor],
    text_encoder: Mapping[str, torch.Tensor],
    *,
    unet_config: Mapping[str, object],
    vae_config: Mapping[str, object],
) -> dict[str, torch.Tensor]:
    """Merge the three diffusers state dicts into one LDM-layout single-file state dict.

    The text encoder keys get `cond_stage_model.transformer.text_model.` (transformers ≥ 5.6
    flattens `CLIPTextModel`, so a missing `text_model.` level is restored). VAE attention
    projections become 1×1 conv weights as in the original checkpoints.
    """
    layers = int(str(unet_config["layers_per_block"]))
    up_types = unet_config["up_block_types"]
    assert isinstance(up_types, (list, tuple))
    up_attn = [str(t).startswith("CrossAttn") for t in up_types]
    out: dict[str, torch.Tensor] = {}
    for key, value in unet.items():
        out[UNET_PREFIX + unet_key(key, layers_per_block=layers, up_has_attention=up_attn)] = value
    down_types = vae_config["down_block_types"]
    assert isinstance(down_types, (list, tuple))
    for key, value in vae.items():
        new = vae_key(key, num_blocks=len(down_types))
        if ".mid.attn_1." in new and new.endswith(".weight") and value.dim() == 2:
            value = value[:, :, None, None]
        out[VAE_PREFIX + new] = value
    for key, value in text_encoder.items():
        name = key if key.startswith("text_model.") else "text_model." + key
        out[CLIP_PREFIX + name] = value
    return out
