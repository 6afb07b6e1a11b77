"""Input prefetch (the decode thread, on by default) changes no tensor: prefetch on and off give
bit-identical losses and LoRA files, and a state saved with prefetch off resumes with it on (and
the reverse) to the same bits. Uses augmentations (random crop, colour jitter, flips) so every
image depends on its (seed, epoch, batch number) RNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from train_support import base_args

from secure_trainer.kohya.config import parse_train_args
from secure_trainer.train.loop import train

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]


def _config(dataset: Path, out: Path) -> Path:
    lines = ["[general]", 'caption_extension = ".txt"', "flip_aug = true", "random_crop = true",
             "color_aug = true", "[[datasets]]", "resolution = 64", "batch_size = 2"]
    for sub in ("10_subject", "5_style"):
        lines += ["  [[datasets.subsets]]", f'  image_dir = "{dataset / sub}"', "  num_repeats = 1"]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _run(model: Any, cfg: Path, out: Path, workers: int, *extra: str) -> Any:
    argv = base_args(model.diffusers_dir, cfg, out, "--max_train_steps", "8", "--learning_rate",
                     "1e-3", "--max_data_loader_n_workers", str(workers), *extra)
    return train(parse_train_args(argv, warn=lambda _m: None))


def _same(a: Path, b: Path) -> bool:
    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_prefetch_on_off_and_resume_across_are_bit_identical(tiny_model: Any, tiny_dataset: Path,
                                                             tmp_path: Path) -> None:
    cfg = _config(tiny_dataset, tmp_path / "ds.toml")
    off = _run(tiny_model, cfg, tmp_path / "off", 0, "--save_every_n_steps", "3", "--save_state")
    on = _run(tiny_model, cfg, tmp_path / "on", 8, "--save_every_n_steps", "5", "--save_state")
    assert off.steps == on.steps == 8
    assert on.losses == off.losses
    assert _same(tmp_path / "off" / "last.safetensors", tmp_path / "on" / "last.safetensors")
    # Mid-epoch states (6 batches per epoch): saved without prefetch, resumed with it; and back.
    r_on = _run(tiny_model, cfg, tmp_path / "r_on", 8, "--resume",
                str(tmp_path / "off" / "last-step00000003-state"))
    r_off = _run(tiny_model, cfg, tmp_path / "r_off", 0, "--resume",
                 str(tmp_path / "on" / "last-step00000005-state"))
    assert r_on.losses == off.losses[3:] and r_off.losses == off.losses[5:]
    assert _same(tmp_path / "off" / "last.safetensors", tmp_path / "r_on" / "last.safetensors")
    assert _same(tmp_path / "off" / "last.safetensors", tmp_path / "r_off" / "last.safetensors")
