"""The lora-scripts YAML dialect (`--config run.yaml`) maps onto our settings; unknown keys fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from secure_trainer.data.dataset import KohyaDataset
from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.kohya.config import parse_train_args
from tests.unit.kohya_images import make_folder

NESTED = """\
model_config:
  base_model: {model}
  model_type: sdxl
train_config:
  lora_rank: 16
  lora_alpha: 8
  batch_size: 2
  epochs: 3
  learning_rate: 1e-4
  save_steps: 50
  freeze_modules: [text_encoder]
  resolution: 64
data_config:
  train_data_dir: {data}
  metadata_path: {csv}
  repeats: 2
output_config:
  output_dir: {out}
"""


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    make_folder(tmp_path / "images", 3)
    (tmp_path / "images" / "metadata.csv").write_text(
        'file_name,text\nimg000.png,"a photo of zq, red"\nimg001.png,a photo of zq\n',
        encoding="utf-8")
    return tmp_path


def _write(folder: Path, text: str) -> Path:
    path = folder / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_nested_run_file_maps_onto_settings(folder: Path) -> None:
    run = _write(folder, NESTED.format(model=folder / "m.safetensors", data=folder / "images",
                                       csv=folder / "images" / "metadata.csv", out=folder / "o"))
    s = parse_train_args(["--config", str(run)], warn=[].append)
    assert s.sdxl and s.pretrained_model_name_or_path == folder / "m.safetensors"
    assert (s.network.dim, s.network.alpha, s.network.train_unet_only) == (16, 8.0, True)
    assert (s.datasets[0].batch_size, s.max_train_epochs, s.save_every_n_steps) == (2, 3, 50)
    assert s.optimizer.learning_rate == 1e-4 and s.output_dir == folder / "o"
    subset = s.datasets[0].subsets[0]
    assert subset.image_dir == folder / "images" and subset.num_repeats == 2
    ds = KohyaDataset(s.datasets, seed=1, prior_loss_weight=1.0)
    captions = sorted(ds.raw_caption(r.index) for r in ds.records)
    assert captions == ["", "a photo of zq", "a photo of zq, red"]  # img002 is not listed


def test_flat_keys_and_command_line_override(folder: Path) -> None:
    make_folder(folder / "kohya" / "5_zq", 2, caption="zq")
    run = _write(folder, f"base_model: {folder / 'm.safetensors'}\ntrain_data_dir: "
                         f"{folder / 'kohya'}\noutput_dir: {folder / 'o'}\nlora_rank: 8\n"
                         "resolution: 64\ncaption_extension: .txt\nfreeze_modules: unet\n")
    s = parse_train_args(["--config", str(run), "--network_dim", "4"], warn=[].append)
    assert s.network.dim == 4 and s.network.train_text_encoder_only and not s.sdxl
    assert s.datasets[0].subsets[0].num_repeats == 5  # Kohya folder layout without metadata_path


@pytest.mark.parametrize(("text", "named"), [
    ("base_model: x\nlora_rnak: 4\n", "lora_rnak"),
    ("train_config:\n  warmup_ratio: 0.1\n", "warmup_ratio"),
    ("freeze_modules: [vae]\n", "vae"),
    ("model_type: sd2\n", "model_type"),
    ("lora_rank: many\n", "network_dim"),
    ("base_model: [unclosed\n", "line"),
])
def test_bad_run_files_are_config_errors_naming_the_key(folder: Path, text: str,
                                                        named: str) -> None:
    with pytest.raises(ConfigError, match=named) as err:
        parse_train_args(["--config", str(_write(folder, text))], warn=[].append)
    assert err.value.exit_code == 2


def test_caption_csv_must_be_utf8(folder: Path) -> None:
    (folder / "images" / "metadata.csv").write_bytes(b"img000.png,caf\xe9\n")
    run = _write(folder, NESTED.format(model=folder / "m", data=folder / "images",
                                       csv=folder / "images" / "metadata.csv", out=folder / "o"))
    s = parse_train_args(["--config", str(run)], warn=[].append)
    with pytest.raises(DataRejected):
        KohyaDataset(s.datasets, seed=1, prior_loss_weight=1.0)
