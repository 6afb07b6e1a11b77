"""SDXL LoRA metadata as sd-scripts writes it (base model version, ModelSpec architecture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from secure_trainer.kohya.metadata import PRIVATE_KEYS, build_metadata
from secure_trainer.settings import DatasetSettings, MetadataMode, SubsetSettings, TrainSettings


def _settings(*, sdxl: bool, v_parameterization: bool = False) -> TrainSettings:
    subset = SubsetSettings(image_dir=Path("/data/10_alice"))
    return TrainSettings(pretrained_model_name_or_path=Path("/m"), output_dir=Path("/o"),
                         datasets=(DatasetSettings(subsets=(subset,), resolution=(1024, 1024)),),
                         output_name="alice", sdxl=sdxl, v_parameterization=v_parameterization)


@pytest.mark.parametrize("mode", list(MetadataMode))
def test_sdxl_keys_in_every_mode(mode: MetadataMode) -> None:
    meta = build_metadata(_settings(sdxl=True), mode=mode, training_info={"steps": 3})
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["ss_v2"] == "False"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert meta["modelspec.implementation"] == "https://github.com/Stability-AI/generative-models"
    assert meta["modelspec.resolution"] == "1024x1024"
    if mode is not MetadataMode.FULL:
        assert not PRIVATE_KEYS & set(meta) and "alice" not in "".join(meta.values())


def test_sdxl_v_prediction_keeps_the_sdxl_version() -> None:
    meta = build_metadata(_settings(sdxl=True, v_parameterization=True),
                          mode=MetadataMode.REDACTED, training_info={})
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.prediction_type"] == "v"
    sd1 = build_metadata(_settings(sdxl=False), mode=MetadataMode.REDACTED, training_info={})
    assert sd1["ss_base_model_version"] == "sd_v1"
    assert sd1["modelspec.architecture"] == "stable-diffusion-v1/lora"
