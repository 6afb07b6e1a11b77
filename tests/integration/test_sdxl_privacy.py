"""SDXL with the privacy tools on the tiny SDXL model: `--dp` (DP-SGD) trains and records ε,
`audit mia` scores an SDXL LoRA, and `--cache_text_encoder_outputs_to_disk` writes its cache
under the run's output folder only and reuses it on the next run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from tests.integration.train_support import base_args, private_strings, write_dataset_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
REFERENCE = Path(__file__).resolve().parent.parent / "data" / "kohya-sdxl-lora-dim16.json"


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from secure_trainer.devtools.tiny_sdxl import make_tiny_sdxl

    return make_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


def _tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata())  # noqa: SIM118


def test_dp_sgd_trains_sdxl_and_records_epsilon(tiny_sdxl: Any, tiny_dataset: Path,
                                                tmp_path: Path) -> None:
    from secure_trainer.kohya.config import parse_train_args
    from secure_trainer.privacy.dp_accounting import epsilon_after
    from secure_trainer.privacy.dp_record import read_record
    from secure_trainer.train.loop import train

    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml")
    argv = base_args(tiny_sdxl.diffusers_dir, cfg, tmp_path / "out", "--sdxl",
                     "--learning_rate", "1e-2", "--max_train_steps", "4", "--dp",
                     "--dp_target_epsilon", "8", "--mixed_precision", "bf16")
    result = train(parse_train_args(argv, warn=lambda _m: None), warn=lambda _m: None)
    assert result.lora_path is not None and result.steps == 4
    record = read_record(result.lora_path)
    assert record is not None and record.steps == 4 and record.num_images == 12
    assert record.epsilon == pytest.approx(epsilon_after(
        "rdp", record.noise_multiplier, record.sample_rate, 4, record.delta))
    assert 0 < record.epsilon <= 8.0
    tensors, meta = _tensors(result.lora_path)
    assert meta["ss_dp"] == "True" and 0 < float(meta["ss_dp_epsilon"]) <= 8.0
    assert meta["ss_base_model_version"].startswith("sdxl")
    # The file sd-scripts writes for SDXL (tiny widths, same names).
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))["tensors"]
    assert set(tensors) == set(reference)
    # Noised updates reached the UNet and both encoders ...
    for key in ("lora_unet_output_blocks_0_1_transformer_blocks_9_attn2_to_k.lora_up.weight",
                "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight",
                "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"):
        assert tensors[key].abs().max() > 0, key
    # ... but not CLIP-L's unused last layer: no gradient, so no noise either (as sd-scripts).
    last = [k for k in tensors if k.startswith("lora_te1_") and "_layers_" in k
            and k.endswith("lora_up.weight")]
    top = max(int(k.split("_layers_")[1].split("_")[0]) for k in last)
    assert all(float(tensors[k].abs().max()) == 0 for k in last if f"_layers_{top}_" in k)
    assert not private_strings(tiny_dataset) & set(" ".join(meta.values()).split())
