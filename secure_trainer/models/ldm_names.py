"""Diffusers UNet2DConditionModel names → the original LDM/SGM names (`input_blocks.4.1...`).

SDXL LoRA keys use these names (sd-scripts builds SDXL on an LDM-layout UNet), and the
development single-file checkpoints are written with them. Pure string mapping; never reads
or writes files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

ModuleNamer = Callable[[str], str]
"""Maps a diffusers module path to the LDM module path."""

_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    # SDXL's size/pooled-text embedding MLP (diffusers `add_embedding`).
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _resnet_rest(rest: str, table: Mapping[str, str]) -> str:
    layer, _, param = rest.rpartition(".")
    return f"{table.get(layer, layer)}.{param}"


def unet_key(key: str, *, layers_per_block: int, up_has_attention: Sequence[bool]) -> str:
    """LDM name of one diffusers UNet2DConditionModel parameter (`<module path>.<param>`).

    Works for SD1.x and SDXL layouts (the block numbering follows `layers_per_block` and which
    up blocks have attention). Raises KeyError for a name outside the UNet layout.
    """
    for old, new in _UNET_TOP.items():
        if key.startswith(old):
            return new + key[len(old):]
    step = layers_per_block + 1
    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{step * i + j + 1}.0.{_resnet_rest(rest, _UNET_RESNET)}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{step * i + j + 1}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{step * (int(m[1]) + 1)}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet_rest(m[2], _UNET_RESNET)}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{step * i + j}.0.{_resnet_rest(rest, _UNET_RESNET)}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{step * i + j}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        i = int(m[1])
        slot = 2 if up_has_attention[i] else 1
        return f"output_blocks.{step * i + layers_per_block}.{slot}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet parameter {key}")


def unet_module_namer(config: Mapping[str, object]) -> ModuleNamer:
    """A function mapping a diffusers UNet module path to its LDM module path, for `config`."""
    layers = int(str(config["layers_per_block"]))
    up_types = config["up_block_types"]
    assert isinstance(up_types, (list, tuple))
    up_attn = [str(t).startswith("CrossAttn") for t in up_types]

    def name(path: str) -> str:
        return unet_key(path + ".weight", layers_per_block=layers,
                        up_has_attention=up_attn)[: -len(".weight")]

    return name

