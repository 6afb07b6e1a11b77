"""`secure-trainer train` as a real subprocess: exit codes, one-line errors without paths,
quiet output that never shows a caption word, file name or data path."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from train_support import base_args, private_strings, run_cli, write_dataset_config
from typer.testing import CliRunner

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _one_line_error(stderr: str, kind: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error[")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr  # warnings may precede it
    assert errors[0].startswith(f"error[{kind}]: ")
    assert "Traceback" not in stderr
    return errors[0]


def test_help_lists_kohya_flags_and_ours() -> None:
    from entrypoint.cli import build_app

    result = CliRunner().invoke(build_app(), ["train", "--help"])
    assert result.exit_code == 0
    assert "--pretrained_model_name_or_path" in result.output and "--log-level" in result.output


def test_unknown_flag_exits_2(tmp_path: Path) -> None:
    proc = run_cli("train", "--no_such_flag", "1", "--output_dir", str(tmp_path))
    assert proc.returncode == 2
    line = _one_line_error(proc.stderr, "config")
    assert "no_such_flag" in line and str(tmp_path) not in line


def test_missing_data_dir_exits_8_without_path(tiny_model: Any, tmp_path: Path) -> None:
    missing = tmp_path / "secret_client_photos"
    proc = run_cli("train", "--pretrained_model_name_or_path", str(tiny_model.diffusers_dir),
                   "--train_data_dir", str(missing), "--output_dir", str(tmp_path / "out"),
                   "--resolution", "64")
    assert proc.returncode == 8
    line = _one_line_error(proc.stderr, "data")
    assert "secret_client_photos" not in line and str(tmp_path) not in line


def test_pickle_model_exits_8_without_path(tiny_dataset: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "private_model_name.ckpt"
    ckpt.write_bytes(pickle.dumps({"state_dict": {}}))
    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml")
    proc = run_cli("train", *base_args(ckpt, cfg, tmp_path / "out", "--max_train_steps", "1"))
    assert proc.returncode == 8
    line = _one_line_error(proc.stderr, "data")
    assert "pickle" in line.lower()
    assert "private_model_name" not in line and str(tmp_path) not in line
    assert not (tmp_path / "out" / "last.safetensors").exists()


def test_quiet_run_shows_numbers_only(tiny_model: Any, tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml")
    out = tmp_path / "out"
    proc = run_cli("train", "--progress-every", "1",
                   *base_args(tiny_model.diffusers_dir, cfg, out, "--max_train_steps", "3",
                              "--learning_rate", "1e-3", "--cache_latents"))
    assert proc.returncode == 0, proc.stderr
    assert (out / "last.safetensors").is_file()
    summary = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(summary) == 1 and summary[0].startswith("trained 3 steps")
    assert "step 3/3" in proc.stderr
    everything = (proc.stdout + proc.stderr).lower()
    leaked = [s for s in private_strings(tiny_dataset) if s.lower() in everything]
    assert leaked == []
    assert str(tiny_dataset).lower() not in everything and str(out).lower() not in everything


def test_lora_scripts_yaml_with_caption_csv_trains(tiny_model: Any, tiny_dataset: Path,
                                                   tmp_path: Path) -> None:
    """`train --config run.yaml` (lora-scripts dialect): a flat image folder captioned by a
    metadata CSV, nested sections, freeze_modules; unknown keys exit 2 naming the key."""
    import shutil

    from safetensors import safe_open

    flat = tmp_path / "images"
    flat.mkdir()
    rows = ["file_name,caption"]
    for image in sorted((tiny_dataset / "10_subject").glob("*.png")):
        shutil.copy(image, flat / image.name)
        rows.append(f'{image.name},"a red circle, {image.stem}"')
    (tmp_path / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = tmp_path / "run.yaml"
    run.write_text(
        f"model_config:\n  base_model: {tiny_model.diffusers_dir}\n"
        f"train_config:\n  lora_rank: 4\n  lora_alpha: 4\n  batch_size: 2\n  epochs: 1\n"
        f"  learning_rate: 1e-3\n  resolution: 64\n  seed: 3\n  freeze_modules: [text_encoder]\n"
        f"data_config:\n  train_data_dir: {flat}\n  metadata_path: {tmp_path / 'metadata.csv'}\n"
        f"output_config:\n  output_dir: {tmp_path / 'out'}\n  output_name: yaml\n",
        encoding="utf-8")
    proc = run_cli("train", "--quiet", "--config", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trained 2 steps / 1 epochs" in proc.stdout  # 3 images, batch 2
    with safe_open(str(tmp_path / "out" / "yaml.safetensors"), "pt") as fh:
        assert all(k.startswith("lora_unet_") for k in fh.keys())  # noqa: SIM118
    run.write_text(run.read_text(encoding="utf-8") + "warmup_ratio: 0.1\n", encoding="utf-8")
    bad = run_cli("train", "--config", str(run))
    assert bad.returncode == 2 and "warmup_ratio" in _one_line_error(bad.stderr, "config")
