"""Kohya LoRA files: atomic save, one dtype, string metadata, sshs hash, redaction, loading back."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.kohya.export import (
    build_metadata,
    kohya_state_dict,
    load_kohya_into,
    read_lora,
    save_dtype,
    save_lora,
)
from secure_trainer.models.lora import inject_lora
from secure_trainer.settings import (
    DatasetSettings,
    MetadataMode,
    NetworkSettings,
    SubsetSettings,
    TrainSettings,
)
from tests.conftest import REPO_ROOT

REFERENCE = REPO_ROOT / "tests" / "data" / "kohya-sd15-lora-dim16.json"
SECRET_WORDS = ("alice", "hospital", "scan_0042", "birthmark")
REDACTED_KEYS = {
    "ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_base_model_version", "ss_v2",
    "ss_resolution", "ss_session_id", "modelspec.sai_model_spec",
    "modelspec.architecture", "modelspec.implementation", "modelspec.title",
    "modelspec.resolution", "modelspec.prediction_type", "sshs_model_hash",
}


def _settings(**kw: Any) -> TrainSettings:
    subset = SubsetSettings(image_dir=Path("/data/hospital/10_alice birthmark"), num_repeats=10,
                            class_tokens="alice", caption_prefix="alice")
    fields: dict[str, Any] = {"network": NetworkSettings(dim=4, alpha=2)} | kw
    return TrainSettings(
        pretrained_model_name_or_path=Path("/models/alice-base.safetensors"),
        datasets=(DatasetSettings(subsets=(subset,), resolution=(64, 64)),),
        output_dir=Path("/out/hospital"), output_name="alice_lora", training_comment="alice",
        **fields)


def _info() -> dict[str, Any]:
    return {
        "steps": 12, "epoch": 2, "session_id": 7, "num_train_images": 30, "num_reg_images": 0,
        "num_batches_per_epoch": 6, "num_epochs": 2, "training_started_at": 1.7e9,
        "training_finished_at": 1.7e9 + 60, "optimizer": "torch.optim.AdamW",
        "dataset_dirs": {"10_alice birthmark": {"n_repeats": 10, "img_count": 3}},
        "tag_frequency": {"10_alice birthmark": {"alice": 3, "scan_0042": 1}},
        "bucket_info": {"buckets": {"0": {"resolution": [64, 64], "count": 30}}},
        "sd_model_name": "alice-base.safetensors", "new_sd_model_hash": "ab" * 32,
        "extra": {"ss_dp_epsilon": "3.0"},
    }


@pytest.fixture()
def handles(tiny_model: Any) -> Any:
    from secure_trainer.models.loading import load_base_model

    h = inject_lora(load_base_model(tiny_model.diffusers_dir), NetworkSettings(dim=4, alpha=2))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in h.unet_params() + h.text_encoder_params():
            p.copy_(torch.randn(p.shape, generator=gen))
    return h


def _header(path: Path) -> tuple[bytes, int]:
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return blob[8:8 + n], n


def test_save_is_atomic_single_dtype_and_hashed(tmp_path: Path, handles: Any) -> None:
    out = tmp_path / "lora.safetensors"
    tensors = kohya_state_dict(handles, save_dtype("fp16"))
    digest = save_lora(out, tensors, build_metadata(
        _settings(), mode=MetadataMode.REDACTED, training_info={"steps": 1, "epoch": 1}))
    assert [p.name for p in tmp_path.iterdir()] == ["lora.safetensors"]  # no temp file left
    raw, n = _header(out)
    header = json.loads(raw)
    meta = header.pop("__metadata__")
    assert {v["dtype"] for v in header.values()} == {"F16"}
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["sshs_model_hash"] == digest == hashlib.sha256(out.read_bytes()[8 + n:]).hexdigest()
    assert all(header[k]["shape"] == [] for k in header if k.endswith(".alpha"))
    # Same inputs ⇒ byte-identical file (canonical header), so registry hashes are stable.
    again = tmp_path / "again.safetensors"
    save_lora(again, tensors, meta | {"ss_session_id": meta["ss_session_id"]})
    assert again.read_bytes() == out.read_bytes()
    with pytest.raises(ConfigError):
        save_lora(tmp_path / "lora.ckpt", tensors, {})


def test_redacted_metadata_reveals_nothing_about_the_data(tmp_path: Path, handles: Any) -> None:
    meta = build_metadata(_settings(), mode=MetadataMode.REDACTED, training_info=_info())
    out = tmp_path / "lora.safetensors"
    save_lora(out, kohya_state_dict(handles), meta)
    raw, _ = _header(out)
    text = raw.decode().lower()
    for word in SECRET_WORDS:
        assert word not in text
    keys = set(json.loads(raw)["__metadata__"])
    assert keys == REDACTED_KEYS | {"ss_dp_epsilon"}
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "2.0"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["ss_resolution"] == "(64, 64)"
    with pytest.raises(ConfigError):
        build_metadata(_settings(), mode=MetadataMode.REDACTED,
                       training_info={"extra": {"ss_tag_frequency": "{}"}})


def test_full_metadata_has_sd_scripts_key_set(tmp_path: Path, handles: Any) -> None:
    ref_keys = set(json.loads(REFERENCE.read_text(encoding="utf-8"))["metadata_keys"])
    info = _info()
    del info["extra"]
    out = tmp_path / "full.safetensors"
    save_lora(out, kohya_state_dict(handles), build_metadata(
        _settings(), mode=MetadataMode.FULL, training_info=info))
    _, meta = read_lora(out)
    assert set(meta) == ref_keys
    assert json.loads(meta["ss_tag_frequency"]) == info["tag_frequency"]
    assert meta["ss_output_name"] == "alice_lora"


def test_none_metadata_is_the_no_metadata_set(handles: Any) -> None:
    settings = _settings(network=NetworkSettings(dim=4, alpha=2, conv_dim=2))
    meta = build_metadata(settings, mode=MetadataMode.NONE, training_info=_info())
    assert {k for k in meta if k.startswith("ss_")} == {
        "ss_v2", "ss_base_model_version", "ss_network_module", "ss_network_dim",
        "ss_network_alpha", "ss_network_args", "ss_dp_epsilon"}
    assert json.loads(meta["ss_network_args"]) == {"conv_dim": "2", "conv_alpha": "1.0"}


def test_load_round_trip_and_rejections(tmp_path: Path, tiny_model: Any, handles: Any) -> None:
    from secure_trainer.models.loading import load_base_model

    path = tmp_path / "lora.safetensors"
    handles.set_alpha(next(iter(handles.modules)), 3.0)
    saved = kohya_state_dict(handles)
    save_lora(path, saved, {})
    fresh = inject_lora(load_base_model(tiny_model.diffusers_dir), NetworkSettings(dim=4, alpha=2))
    report = load_kohya_into(fresh, path, strict=True)
    assert report.loaded == len(fresh.modules) and not report.missing and not report.ignored
    for key, value in kohya_state_dict(fresh).items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    # unet-only network: text-encoder modules in the file are ignored, as sd-scripts does
    unet_only = inject_lora(load_base_model(tiny_model.diffusers_dir),
                            NetworkSettings(dim=4, alpha=2, train_unet_only=True))
    assert load_kohya_into(unet_only, path).ignored
    # rank mismatch
    other = inject_lora(load_base_model(tiny_model.diffusers_dir), NetworkSettings(dim=8, alpha=2))
    with pytest.raises(DataRejected):
        load_kohya_into(other, path)
    # a module this model does not have
    bogus = dict(saved)
    bogus["lora_unet_not_a_module.lora_down.weight"] = torch.zeros(4, 4)
    bogus["lora_unet_not_a_module.lora_up.weight"] = torch.zeros(4, 4)
    bogus["lora_unet_not_a_module.alpha"] = torch.tensor(1.0)
    save_lora(tmp_path / "bogus.safetensors", bogus, {})
    with pytest.raises(DataRejected):
        load_kohya_into(fresh, tmp_path / "bogus.safetensors")
    # a pickle LoRA is never loaded
    torch.save(saved, tmp_path / "lora.pt")
    with pytest.raises(DataRejected) as err:
        load_kohya_into(fresh, tmp_path / "lora.pt")
    assert err.value.exit_code == 8 and "pickle" in err.value.message


# Every key that counts steps, epochs, batches or images: any two give images × repeats.
_COUNT_KEYS = ("ss_steps", "ss_epoch", "ss_num_train_images", "ss_num_reg_images",
               "ss_num_batches_per_epoch", "ss_max_train_steps", "ss_num_epochs",
               "ss_num_validation_images", "ss_max_validation_steps", "ss_dp_sampling_rate",
               "ss_dp_num_images")


@pytest.mark.parametrize("mode", [MetadataMode.REDACTED, MetadataMode.NONE])
def test_redacted_metadata_drops_every_dataset_size_count(mode: MetadataMode) -> None:
    """No key or value of the redacted/none metadata carries the run's step, epoch, batch or
    image counts; `--metadata full` still has them; `extra` cannot smuggle them back."""
    info = _info() | {"steps": 4321, "epoch": 87, "num_train_images": 5309,
                      "num_batches_per_epoch": 2713, "max_train_steps": 6011, "num_epochs": 89}
    meta = build_metadata(_settings(), mode=mode, training_info=info)
    assert not set(_COUNT_KEYS) & set(meta)
    for number in ("4321", "87", "5309", "2713", "6011", "89"):
        assert not any(number in v for v in meta.values()), number
    full = build_metadata(_settings(), mode=MetadataMode.FULL, training_info=info)
    assert full["ss_steps"] == "4321" and full["ss_epoch"] == "87"
    assert full["ss_num_train_images"] == "5309" and full["ss_max_train_steps"] == "6011"
    for key in ("ss_steps", "ss_epoch", "ss_max_train_steps"):
        with pytest.raises(ConfigError):
            build_metadata(_settings(), mode=mode, training_info={"extra": {key: "1"}})
