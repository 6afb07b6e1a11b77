"""Base-model loading: diffusers folder and LDM single file, pickle refusal, header validation."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.models.loading import load_base_model
from secure_trainer.models.safetensors_check import read_header


def _raw_safetensors(path: Path, header: object, data: bytes, *, length: int | None = None) -> Path:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


def _assert_rejected(path: Path, *words: str) -> DataRejected:
    with pytest.raises(DataRejected) as err:
        load_base_model(path)
    assert err.value.exit_code == 8
    assert str(path) not in err.value.message and path.name not in err.value.message
    for word in words:
        assert word in err.value.message
    return err.value


def test_diffusers_folder_loads_quietly_with_sdpa(tiny_model: Any, capfd: pytest.CaptureFixture[str]) -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    capfd.readouterr()
    base = load_base_model(tiny_model.diffusers_dir)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert base.model_format == "diffusers-safetensors"
    assert base.vae_scale_factor == pytest.approx(0.18215)
    cfg = base.noise_scheduler.config
    assert (cfg.beta_schedule, cfg.beta_start, cfg.beta_end, cfg.num_train_timesteps) == (
        "scaled_linear", 0.00085, 0.012, 1000)
    for module in (base.unet, base.vae):
        assert all(isinstance(p, AttnProcessor2_0) for p in module.attn_processors.values())
    assert base.text_encoder.config._attn_implementation == "sdpa"
    assert len(base.sha256) == 64
    ids = base.tokenizer("a red circle", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == base.tokenizer.bos_token_id


def test_single_file_loads_the_same_weights(tiny_model: Any) -> None:
    folder = load_base_model(tiny_model.diffusers_dir)
    single = load_base_model(tiny_model.single_file)
    assert single.model_format == "single-file-safetensors"
    for part in ("unet", "vae", "text_encoder"):
        a, b = getattr(folder, part).state_dict(), getattr(single, part).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert single.tokenizer("a red circle").input_ids == folder.tokenizer("a red circle").input_ids
    assert single.sha256 == __import__("hashlib").sha256(tiny_model.single_file.read_bytes()).hexdigest()


def test_vae_override_folder_and_ldm_file(tmp_path: Path, tiny_model: Any) -> None:
    from safetensors.torch import load_file, save_file

    ref = load_base_model(tiny_model.diffusers_dir).vae.state_dict()
    with_folder = load_base_model(tiny_model.single_file, vae=tiny_model.diffusers_dir / "vae")
    ldm = {k: v for k, v in load_file(str(tiny_model.single_file)).items()
           if k.startswith("first_stage_model.")}
    save_file(ldm, str(tmp_path / "vae.safetensors"))
    with_file = load_base_model(tiny_model.diffusers_dir, vae=tmp_path / "vae.safetensors")
    for vae in (with_folder.vae, with_file.vae):
        got = vae.state_dict()
        assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_pickle_checkpoints_are_refused(tmp_path: Path, tiny_model: Any) -> None:
    state = {"model.diffusion_model.conv_in.weight": torch.zeros(2, 2)}
    for name in ("model.ckpt", "model.pt", "model.pth", "model.bin"):
        torch.save(state, tmp_path / name)
        _assert_rejected(tmp_path / name, "pickle", "safetensors")
    # a torch zip disguised as .safetensors is caught by its magic bytes
    torch.save(state, tmp_path / "disguised.safetensors")
    _assert_rejected(tmp_path / "disguised.safetensors", "pickle")
    # a diffusers folder whose UNet weights exist only as a pickle
    folder = tmp_path / "pipe"
    shutil.copytree(tiny_model.diffusers_dir, folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(state, folder / "unet" / "diffusion_pytorch_model.bin")
    _assert_rejected(folder, "pickle")


@pytest.mark.parametrize("case", ["length_past_end", "length_over_limit", "not_json", "overlap",
                                  "size_mismatch", "offsets_out_of_range", "metadata_not_string",
                                  "gap", "duplicate_key"])
def test_malformed_safetensors_headers(tmp_path: Path, case: str) -> None:
    f32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    path = tmp_path / "bad.safetensors"
    data = bytes(16)
    if case == "length_past_end":
        _raw_safetensors(path, {"a": f32}, data, length=10_000)
    elif case == "length_over_limit":
        _raw_safetensors(path, {"a": f32}, data, length=200 * 1024 * 1024)
    elif case == "not_json":
        _raw_safetensors(path, b"{not json", data)
    elif case == "overlap":
        _raw_safetensors(path, {"a": f32, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                                "c": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}, data)
    elif case == "size_mismatch":
        _raw_safetensors(path, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, data)
    elif case == "offsets_out_of_range":
        _raw_safetensors(path, {"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}, data)
    elif case == "metadata_not_string":
        _raw_safetensors(path, {"__metadata__": {"k": 1}, "a": f32,
                                "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, data)
    elif case == "gap":
        _raw_safetensors(path, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, data)
    elif case == "duplicate_key":
        text = b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},' \
               b'"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
        _raw_safetensors(path, text, data)
    with pytest.raises(DataRejected) as err:
        read_header(path)
    assert "malformed safetensors header" in err.value.message
    _assert_rejected(path, "malformed safetensors header")


def test_non_sd1_and_unfitting_single_files(tmp_path: Path, tiny_model: Any) -> None:
    from safetensors.torch import load_file, save_file

    tensor = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    sdxl = _raw_safetensors(tmp_path / "sdxl.safetensors",
                            {"conditioner.embedders.0.transformer.x": tensor}, bytes(4))
    _assert_rejected(sdxl, "SDXL")
    # Without our config metadata the bundled SD1.5 configs are used; tiny weights do not fit.
    state = load_file(str(tiny_model.single_file))
    save_file(state, str(tmp_path / "plain.safetensors"))
    _assert_rejected(tmp_path / "plain.safetensors", "does not match")
    assert load_base_model(tiny_model.single_file).model_format == "single-file-safetensors"


def test_bundled_sd15_configs_cover_every_real_ldm_key() -> None:
    """The bundled configs + diffusers' conversion turn SD1.5's LDM key set into exactly our modules
    (checked on the meta device; real SD1.5 key names asserted as known facts)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    from secure_trainer.devtools.ldm_layout import to_ldm_state_dict
    from secure_trainer.models.families import sd15_config
    from secure_trainer.models.loading import quiet_hf

    ucfg, vcfg = sd15_config("unet"), sd15_config("vae")
    with quiet_hf(), init_empty_weights():
        unet, vae = UNet2DConditionModel.from_config(ucfg), AutoencoderKL.from_config(vcfg)
    ldm = to_ldm_state_dict(unet.state_dict(), vae.state_dict(), {}, unet_config=ucfg, vae_config=vcfg)
    for known in ("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
                  "model.diffusion_model.input_blocks.3.0.op.weight",
                  "model.diffusion_model.middle_block.2.emb_layers.1.weight",
                  "model.diffusion_model.output_blocks.2.1.conv.weight",
                  "model.diffusion_model.output_blocks.8.2.conv.weight",
                  "model.diffusion_model.output_blocks.11.1.proj_out.weight",
                  "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight",
                  "first_stage_model.encoder.mid.attn_1.q.weight"):
        assert known in ldm, known
    assert ldm["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    with quiet_hf():
        assert set(convert_ldm_unet_checkpoint(ldm, ucfg)) == set(unet.state_dict())
        assert set(convert_ldm_vae_checkpoint(ldm, vcfg)) == set(vae.state_dict())


def test_missing_tokenizer_is_a_config_error(tmp_path: Path) -> None:
    from secure_trainer.models.tokenizers import require_tokenizer

    with pytest.raises(ConfigError):
        require_tokenizer(tmp_path)


def test_cli_dev_tiny_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from entrypoint.cli import main

    assert main(["dev", "tiny-model", str(tmp_path / "m")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tiny model:")
    assert (tmp_path / "m" / "diffusers" / "model_index.json").is_file()
    assert not list((tmp_path / "m").rglob("*.bin"))
    assert load_base_model(tmp_path / "m" / "tiny-sd15.safetensors").unet.config.cross_attention_dim == 32
