"""Multi-process training through `accelerate launch` (CPU, 2 processes, gloo).

`accelerate launch --cpu` starts ONE process unless mpirun is configured; `--multi_gpu` uses
torchrun, and on a host without CUDA our Accelerator(cpu=True) turns that into MULTI_CPU + gloo.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from train_support import BIN, REPO_ROOT, base_args, cli_env, write_dataset_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_cpu_processes_train_and_only_main_writes(tiny_model: Any, tiny_dataset: Path,
                                                      tmp_path: Path) -> None:
    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml")
    out = tmp_path / "out"
    argv = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
            "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
            "-m", "entrypoint.cli", "train", "--progress-every", "1",
            *base_args(tiny_model.diffusers_dir, cfg, out, "--max_train_epochs", "1",
                       "--learning_rate", "1e-3", "--save_state")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=cli_env(),
                          cwd=REPO_ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # 3 batches per epoch dealt to 2 processes ⇒ 2 steps (a single process would run 3).
    summary = [ln for ln in proc.stdout.splitlines() if ln.startswith("trained ")]
    assert summary == [summary[0]] and summary[0].startswith("trained 2 steps / 1 epochs")
    assert sorted(p.name for p in out.iterdir()) == ["last-state", "last.safetensors"]


def test_two_cpu_processes_train_sdxl_with_both_text_encoders(tiny_dataset: Path,
                                                              tmp_path: Path) -> None:
    """DDP wraps the UNet and both SDXL encoders (the pooled projection is read through the
    wrapper); the main process writes one file with lora_te1/lora_te2 keys."""
    from safetensors import safe_open

    from secure_trainer.devtools.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "sdxl")
    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml")
    out = tmp_path / "out"
    argv = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
            "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
            "-m", "entrypoint.cli", "train", "--progress-every", "1",
            *base_args(model.diffusers_dir, cfg, out, "--sdxl", "--max_train_epochs", "1",
                       "--learning_rate", "1e-3")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=cli_env(),
                          cwd=REPO_ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = [ln for ln in proc.stdout.splitlines() if ln.startswith("trained ")]
    assert summary == [summary[0]] and summary[0].startswith("trained 2 steps / 1 epochs")
    with safe_open(str(out / "last.safetensors"), "pt") as fh:
        keys = list(fh.keys())
        trained_te2 = fh.get_tensor(
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight")
    assert any(k.startswith("lora_te1_") for k in keys) and trained_te2.abs().max() > 0
