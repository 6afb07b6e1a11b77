"""LoRA targets, shapes, init and math match sd-scripts networks.lora (kohya-compat §5, §9 items 11–15)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from secure_trainer.errors import ConfigError
from secure_trainer.kohya.export import KEY_RE, kohya_state_dict
from secure_trainer.models.lora import inject_lora
from secure_trainer.settings import NetworkSettings
from tests.conftest import REPO_ROOT

# What sd-scripts @48d368f wrote for SD1.5, dim 16, alpha 8 (names, shapes, dtypes; no weights).
REFERENCE = REPO_ROOT / "tests" / "data" / "kohya-sd15-lora-dim16.json"
DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def _reference() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return loaded


def _meta_sd15() -> SimpleNamespace:
    """Full-size SD1.5 UNet + CLIP text encoder on the meta device (no weights materialised)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from secure_trainer.models.families import sd15_config
    from secure_trainer.models.loading import quiet_hf

    te_cfg = {k: v for k, v in sd15_config("text_encoder").items()
              if k not in ("architectures", "model_type")}
    with quiet_hf(), init_empty_weights():
        unet = UNet2DConditionModel.from_config(sd15_config("unet"))
        text_encoder = CLIPTextModel(CLIPTextConfig(**te_cfg))
    return SimpleNamespace(unet=unet, text_encoder=text_encoder, vae=None)


def _fresh(tiny_model: Any) -> Any:
    from secure_trainer.models.loading import load_base_model

    return load_base_model(tiny_model.diffusers_dir)


def test_full_size_sd15_key_set_equals_sd_scripts_reference() -> None:
    ref = _reference()["tensors"]
    handles = inject_lora(_meta_sd15(), NetworkSettings(dim=16, alpha=8))
    tensors = kohya_state_dict(handles, torch.float32)
    assert len(tensors) == 792 == len(ref)
    assert set(tensors) == set(ref)
    for key, spec in ref.items():
        assert list(tensors[key].shape) == spec["shape"], key
        assert DTYPE_NAMES[tensors[key].dtype] == spec["dtype"], key
    assert all(KEY_RE.match(k) for k in tensors)
    assert len(handles.modules) == 264


def test_unet_only_and_text_encoder_only() -> None:
    unet_only = kohya_state_dict(inject_lora(_meta_sd15(), NetworkSettings(dim=16, alpha=8,
                                                                           train_unet_only=True)))
    assert unet_only and not any(k.startswith("lora_te") for k in unet_only)
    assert len(unet_only) == 192 * 3
    te_only = kohya_state_dict(inject_lora(_meta_sd15(), NetworkSettings(
        dim=16, alpha=8, train_text_encoder_only=True)))
    assert te_only and all(k.startswith("lora_te_text_model_encoder_layers_") for k in te_only)
    assert len(te_only) == 72 * 3
    with pytest.raises(ConfigError):
        inject_lora(_meta_sd15(), NetworkSettings(train_unet_only=True, train_text_encoder_only=True))


def test_conv_dim_adds_exactly_the_c3lier_targets() -> None:
    handles = inject_lora(_meta_sd15(), NetworkSettings(dim=16, alpha=8, conv_dim=4, conv_alpha=2,
                                                        train_unet_only=True))
    tensors = kohya_state_dict(handles)
    ref_unet = {k for k in _reference()["tensors"] if k.startswith("lora_unet_")}
    extra = {k.rsplit(".", 2)[0] if k.endswith("weight") else k.rsplit(".", 1)[0]
             for k in set(tensors) - ref_unet}
    assert len(extra) == 86  # 22 resnets × (conv1, conv2, time_emb_proj) + 14 shortcuts + 6 samplers
    assert all(("_resnets_" in n and n.endswith(("_conv1", "_conv2", "_time_emb_proj", "_conv_shortcut")))
               or n.endswith(("_downsamplers_0_conv", "_upsamplers_0_conv")) for n in extra)
    name = "lora_unet_down_blocks_0_resnets_0_conv1"
    assert list(tensors[f"{name}.lora_down.weight"].shape) == [4, 320, 3, 3]
    assert list(tensors[f"{name}.lora_up.weight"].shape) == [320, 4, 1, 1]
    assert tensors[f"{name}.alpha"].dim() == 0
    shortcut = "lora_unet_down_blocks_1_resnets_0_conv_shortcut"
    assert list(tensors[f"{shortcut}.lora_down.weight"].shape) == [16, 320, 1, 1]
    assert list(tensors["lora_unet_mid_block_resnets_0_time_emb_proj.lora_down.weight"].shape) == [16, 1280]
    assert list(tensors["lora_unet_down_blocks_0_downsamplers_0_conv.lora_down.weight"].shape) == [4, 320, 3, 3]


def test_fresh_init_is_kohya_init(tiny_model: Any) -> None:
    base = _fresh(tiny_model)
    handles = inject_lora(base, NetworkSettings(dim=4, alpha=0, conv_dim=2))
    tensors = kohya_state_dict(handles)
    for name, (layer, kind) in handles.modules.items():
        up, down = tensors[f"{name}.lora_up.weight"], tensors[f"{name}.lora_down.weight"]
        assert torch.count_nonzero(up) == 0, name
        fan_in = math.prod(down.shape[1:])
        assert down.abs().max() <= 1 / math.sqrt(fan_in) + 1e-7, name
        assert down.abs().max() > 0, name
        rank = 2 if kind == "conv3x3" else 4
        # alpha 0 ⇒ rank; conv_alpha unset with conv_dim ⇒ 1 (sd-scripts default)
        assert tensors[f"{name}.alpha"].item() == (1.0 if kind == "conv3x3" else float(rank)), name
        assert down.shape[0] == rank
    assert all(not p.requires_grad for n, p in base.unet.named_parameters() if "lora_" not in n)
    assert all(p.requires_grad for p in handles.unet_params() + handles.text_encoder_params())
    assert len(handles.unet_params()) == 2 * sum(1 for t in handles.targets.values() if t.part == "unet")


def _merged_output(layer: Any, kind: str, down: torch.Tensor, up: torch.Tensor, alpha: float,
                   multiplier: float, x: torch.Tensor) -> torch.Tensor:
    base = layer.base_layer
    scale = multiplier * alpha / down.shape[0]
    if kind == "linear":
        weight = base.weight + scale * up @ down
        return F.linear(x, weight, base.bias)
    delta = torch.einsum("or,rihw->oihw", up[:, :, 0, 0], down)
    return F.conv2d(x, base.weight + scale * delta, base.bias, base.stride, base.padding)


@pytest.mark.parametrize("kind", ["linear", "conv1x1", "conv3x3"])
def test_merging_delta_reproduces_forward(tiny_model: Any, kind: str) -> None:
    base = _fresh(tiny_model)
    handles = inject_lora(base, NetworkSettings(dim=4, alpha=3, conv_dim=2, conv_alpha=5))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in handles.unet_params() + handles.text_encoder_params():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    handles.set_multiplier(0.7)
    tensors = kohya_state_dict(handles)
    name, (layer, _) = next((n, v) for n, v in handles.modules.items() if v[1] == kind)
    if kind == "linear":
        x = torch.randn(2, layer.base_layer.in_features, generator=gen)
    else:
        x = torch.randn(1, layer.base_layer.in_channels, 8, 8, generator=gen)
    with torch.no_grad():
        ours = layer(x)
        merged = _merged_output(layer, kind, tensors[f"{name}.lora_down.weight"],
                                tensors[f"{name}.lora_up.weight"], tensors[f"{name}.alpha"].item(),
                                0.7, x)
        plain = layer.base_layer(x)
    assert not torch.allclose(ours, plain, atol=1e-4)
    torch.testing.assert_close(ours, merged, atol=1e-5, rtol=1e-4)
    handles.set_multiplier(0.0)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), plain)
