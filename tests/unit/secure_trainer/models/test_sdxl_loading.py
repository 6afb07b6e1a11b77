"""SDXL base models: family detection, flag checks, both layouts through the real loader, VAE fp32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.models.detect import check_family, detect_family
from secure_trainer.models.families import SDXL_VAE_SCALE
from secure_trainer.models.loading import load_base_model


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from secure_trainer.devtools.tiny_sdxl import make_tiny_sdxl

    return make_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


def test_detects_sdxl_from_both_layouts_and_sd1(tiny_sdxl: Any, tiny_model: Any) -> None:
    assert detect_family(tiny_sdxl.diffusers_dir) == "sdxl"
    assert detect_family(tiny_sdxl.single_file) == "sdxl"
    assert detect_family(tiny_model.diffusers_dir) == "sd15"
    assert detect_family(tiny_model.single_file) == "sd15"


def test_flag_mismatch_is_a_one_line_config_error() -> None:
    check_family("sdxl", sdxl=True)
    check_family("sd15", sdxl=False)
    for family, sdxl, v2 in (("sdxl", False, False), ("sd15", True, False), ("sdxl", True, True),
                             ("sd15", False, True)):
        with pytest.raises(ConfigError) as err:
            check_family(family, sdxl=sdxl, v2=v2)  # type: ignore[arg-type]
        assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_both_layouts_load_the_same_weights(tiny_sdxl: Any) -> None:
    folder = load_base_model(tiny_sdxl.diffusers_dir, dtype=torch.bfloat16)
    single = load_base_model(tiny_sdxl.single_file, dtype=torch.bfloat16)
    for base in (folder, single):
        assert base.family == "sdxl"
        assert base.vae.dtype == torch.float32  # SDXL VAE never runs in half precision
        assert base.unet.dtype == torch.bfloat16
        assert base.vae_scale_factor == pytest.approx(SDXL_VAE_SCALE)
        assert base.tokenizer_2.pad_token == "!" and base.tokenizer.model_max_length == 77
    assert folder.model_format == "diffusers-safetensors"
    assert single.model_format == "single-file-safetensors"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        a, b = getattr(folder, part).state_dict(), getattr(single, part).state_dict()
        assert set(a) == set(b), part
        for key in a:
            assert torch.equal(a[key], b[key]), (part, key)


def test_single_file_missing_openclip_weight_is_rejected(tiny_sdxl: Any, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_sdxl.single_file))
    dropped = next(k for k in state if k.startswith("conditioner.embedders.1.model.transformer."))
    del state[dropped]
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))  # no secure_trainer metadata ⇒ bundled full-size configs
    with pytest.raises(DataRejected):
        load_base_model(broken)


def test_pickle_sdxl_checkpoint_is_refused(tmp_path: Path) -> None:
    pickled = tmp_path / "sdxl.ckpt"
    torch.save({"conditioner.embedders.1.model.x": torch.zeros(1)}, pickled)
    with pytest.raises(DataRejected):
        detect_family(pickled)
