"""train-llm under `accelerate launch` (CPU, 2 processes, gloo): the epoch's batch groups are
dealt to both processes, only the main one prints and writes, and the adapter loads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from train_support import BIN, REPO_ROOT, cli_env

from secure_trainer.devtools.synthetic_text import make_text_dataset
from secure_trainer.devtools.tiny_llm import make_tiny_llm

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_cpu_processes(tmp_path: Path) -> None:
    model = make_tiny_llm(tmp_path / "model").model_dir
    make_text_dataset(tmp_path / "data", subjects=6, per_subject=3)  # 19 records
    out = tmp_path / "out"
    argv = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", "0", "-m", "entrypoint.cli", "train-llm",
            "--model_name_or_path", str(model), "--dataset", str(tmp_path / "data" / "chat.jsonl"),
            "--output_dir", str(out), "--lora_rank", "2", "--cutoff_len", "128",
            "--per_device_train_batch_size", "4", "--num_train_epochs", "1",
            "--progress-every", "1"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=cli_env(),
                          cwd=REPO_ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # 19 records / batch 4 = 5 batches, dealt to 2 processes ⇒ 3 steps (one process: 5).
    summary = [ln for ln in proc.stdout.splitlines() if ln.startswith("trained ")]
    assert len(summary) == 1 and summary[0].startswith("trained 3 steps / 1 epochs")
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json",
                                                     "adapter_model.safetensors"]

    bad = subprocess.run([*argv[:argv.index("--output_dir")], "--output_dir",
                          str(tmp_path / "o2"), "--dp", "--target_epsilon", "8"],
                         capture_output=True, text=True, timeout=300, env=cli_env(),
                         cwd=REPO_ROOT, check=False)
    assert bad.returncode != 0 and "runs on one process only" in bad.stderr
