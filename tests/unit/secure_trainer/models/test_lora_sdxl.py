"""SDXL LoRA key set and shapes equal what sd-scripts' sdxl_train_network.py writes (kohya-compat §5).

Built on the meta device from the bundled full-size SDXL configs, so no 10 GB model is allocated.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from secure_trainer.kohya.export import KEY_RE, kohya_state_dict
from secure_trainer.models.lora import inject_lora
from secure_trainer.settings import NetworkSettings
from tests.conftest import REPO_ROOT

# What sd-scripts @48d368f builds for SDXL, dim 16 / alpha 8 (and with conv_dim 8 / conv_alpha 4).
REFERENCES = {
    "dim16": (REPO_ROOT / "tests" / "data" / "kohya-sdxl-lora-dim16.json",
              NetworkSettings(dim=16, alpha=8)),
    "dim16-conv8": (REPO_ROOT / "tests" / "data" / "kohya-sdxl-lora-dim16-conv8.json",
                    NetworkSettings(dim=16, alpha=8, conv_dim=8, conv_alpha=4)),
}


def _meta_sdxl() -> SimpleNamespace:
    """Full-size SDXL UNet + CLIP-L + OpenCLIP-bigG on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from secure_trainer.models.families import sdxl_config
    from secure_trainer.models.loading import quiet_hf

    def te(name: str) -> dict[str, Any]:
        return {k: v for k, v in sdxl_config(name).items()
                if k not in ("architectures", "model_type")}

    with quiet_hf(), init_empty_weights():
        unet = UNet2DConditionModel.from_config(sdxl_config("unet"))
        te1 = CLIPTextModel(CLIPTextConfig(**te("text_encoder")))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**te("text_encoder_2")))
    return SimpleNamespace(unet=unet, text_encoder=te1, text_encoder_2=te2, vae=None)


@pytest.mark.parametrize("variant", sorted(REFERENCES))
def test_full_size_sdxl_key_set_equals_sd_scripts_reference(variant: str) -> None:
    path, net = REFERENCES[variant]
    ref: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    tensors = kohya_state_dict(inject_lora(_meta_sdxl(), net), torch.float32)
    assert len(tensors) == ref["tensor_count"] == len(ref["tensors"])
    assert set(tensors) == set(ref["tensors"])
    for key, shape in ref["tensors"].items():
        assert list(tensors[key].shape) == shape, key
    assert all(KEY_RE.match(k) for k in tensors)
    by_prefix: dict[str, int] = {}
    for key in tensors:
        if key.endswith(".alpha"):
            prefix = key.split("_", 2)[0] + "_" + key.split("_", 2)[1]
            by_prefix[prefix] = by_prefix.get(prefix, 0) + 1
    assert by_prefix == ref["modules_by_prefix"]
    # Alphas as Kohya stores them: network_alpha for linear/1x1, conv_alpha for 3x3 convs.
    assert float(tensors["lora_unet_input_blocks_4_1_proj_in.alpha"]) == 8.0
    if net.conv_dim:
        assert float(tensors["lora_unet_input_blocks_1_0_in_layers_2.alpha"]) == 4.0
        assert list(tensors["lora_unet_input_blocks_3_0_op.lora_down.weight"].shape) == [8, 320, 3, 3]
