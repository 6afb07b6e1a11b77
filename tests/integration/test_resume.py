"""--save_state / --resume: an interrupted run resumed from its state gives a bit-identical LoRA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from train_support import base_args, write_dataset_config

from secure_trainer.errors import ConfigError
from secure_trainer.kohya.config import parse_train_args
from secure_trainer.train.loop import train

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("one_thread")]



def _run(model: Any, cfg: Path, out: Path, *extra: str) -> Any:
    # Dropout, flips, noise offset and a cosine schedule make every RNG stream matter.
    argv = base_args(model.diffusers_dir, cfg, out, "--max_train_epochs", "2", "--learning_rate",
                     "1e-3", "--network_dropout", "0.1", "--noise_offset", "0.05",
                     "--lr_scheduler", "cosine", *extra)
    return train(parse_train_args(argv, warn=lambda _m: None))


def _assert_identical(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_resume_is_bit_identical(tiny_model: Any, tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml", flip_aug=True)
    straight = _run(tiny_model, cfg, tmp_path / "straight")
    saved = _run(tiny_model, cfg, tmp_path / "saved", "--save_every_n_epochs", "1",
                 "--save_every_n_steps", "2", "--save_state")
    epoch_state = tmp_path / "saved" / "last-000001-state"
    step_state = tmp_path / "saved" / "last-step00000002-state"
    assert epoch_state.is_dir() and step_state.is_dir() and (tmp_path / "saved" / "last-state").is_dir()
    # safetensors + JSON only: nothing pickled.
    for f in epoch_state.iterdir():
        assert f.suffix in (".safetensors", ".json")
    assert json.loads((step_state / "train_state.json").read_text())["skip_batches"] == 2

    resumed_epoch = _run(tiny_model, cfg, tmp_path / "r1", "--resume", str(epoch_state))
    resumed_step = _run(tiny_model, cfg, tmp_path / "r2", "--resume", str(step_state))

    assert straight.steps == saved.steps == resumed_epoch.steps == resumed_step.steps == 6
    assert len(resumed_epoch.losses) == 3 and len(resumed_step.losses) == 4
    assert resumed_epoch.losses == straight.losses[3:]
    assert resumed_step.losses == straight.losses[2:]
    final = tmp_path / "straight" / "last.safetensors"
    _assert_identical(final, tmp_path / "saved" / "last.safetensors")
    _assert_identical(final, tmp_path / "r1" / "last.safetensors")
    _assert_identical(final, tmp_path / "r2" / "last.safetensors")


def test_resume_refuses_a_state_of_another_network(tiny_model: Any, tiny_dataset: Path,
                                                   tmp_path: Path) -> None:
    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml")
    argv = base_args(tiny_model.diffusers_dir, cfg, tmp_path / "a", "--max_train_steps", "1",
                     "--learning_rate", "1e-3", "--save_state")
    train(parse_train_args(argv, warn=lambda _m: None))
    other = base_args(tiny_model.diffusers_dir, cfg, tmp_path / "b", "--max_train_steps", "2",
                      "--learning_rate", "1e-3", "--resume", str(tmp_path / "a" / "last-state"))
    other[other.index("--network_dim") + 1] = "4"
    with pytest.raises(ConfigError, match="does not match"):
        train(parse_train_args(other, warn=lambda _m: None))
    with pytest.raises(ConfigError):
        train(parse_train_args(other[:-2] + ["--resume", str(tmp_path)], warn=lambda _m: None))
