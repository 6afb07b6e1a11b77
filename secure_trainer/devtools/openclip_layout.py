"""Rename a transformers CLIPTextModelWithProjection state dict into OpenCLIP's layout.

SDXL single-file checkpoints store their second text encoder (OpenCLIP ViT-bigG) under
`conditioner.embedders.1.model.` with fused q/k/v (`attn.in_proj_weight`), `resblocks`, `ln_*`,
`mlp.c_fc`/`c_proj`, a bare `positional_embedding` and a transposed `text_projection`. Used only
to write the development SDXL single file, so the loader's OpenCLIP → transformers path runs on
real key names. Never reads or writes files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

_TOP = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def to_openclip_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP-layout tensors (no prefix) of a CLIPTextModelWithProjection state dict.

    Raises KeyError for a parameter outside the CLIP text-model layout.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key in _TOP:
            out[_TOP[key]] = value
            continue
        if key == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()  # OpenCLIP computes x @ proj
            continue
        m = re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if m is None:
            raise KeyError(f"no OpenCLIP name for {key}")
        layer, module, param = m[1], m[2], m[3]
        if q := re.fullmatch(r"self_attn\.([qkv])_proj", module):
            qkv.setdefault((layer, param), {})[q[1]] = value
            continue
        out[f"transformer.resblocks.{layer}.{_LAYER[module]}.{param}"] = value
    for (layer, param), parts in qkv.items():
        fused = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        out[f"transformer.resblocks.{layer}.attn.in_proj_{param}"] = fused
    return out
