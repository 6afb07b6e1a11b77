"""scripts/gpu-check.sh: the dry mode (CPU, tiny model) runs both trainers end to end and prints
the one JSON the GPU run prints, so the prepared GPU check cannot rot; without a GPU the full
mode refuses with exit 2 instead of measuring the wrong thing."""

from __future__ import annotations

import json
import os
import subprocess  # nosec B404 - fixed argv
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = str(REPO_ROOT / "scripts" / "gpu-check.sh")


@pytest.mark.slow
def test_dry_run_measures_ours_and_the_bare_loop(tmp_path: Path) -> None:
    report = tmp_path / "gpu-check.json"
    env = {**os.environ, "GPU_CHECK_DRY": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(["bash", SCRIPT, "--out", str(tmp_path / "work"), "--json", str(report)],
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert json.loads(proc.stdout) == data  # stdout is exactly the one JSON object
    assert data["mode"].startswith("dry-run") and data["facts"]["cuda_available"] is False
    assert data["config"] | {"steps": 3} == {
        "model": "tiny", "resolution": 64, "steps": 3, "warmup": 1, "batch": 1, "lora_rank": 16,
        "mixed_precision": "no", "attention": "sdpa", "device": "cpu"}
    for kind in ("bare", "ours"):
        run = data[kind]
        assert run["steps"] == 3
        assert run["seconds_per_step"] > 0 and run["peak_bytes"] > 100 * 2**20
        assert run["images_per_second"] == pytest.approx(1 / run["seconds_per_step"])
    ratio = data["ratio_ours_to_bare"]
    assert ratio["seconds_per_step"] == pytest.approx(
        data["ours"]["seconds_per_step"] / data["bare"]["seconds_per_step"])
    assert ratio["peak_memory"] == pytest.approx(
        data["ours"]["peak_bytes"] / data["bare"]["peak_bytes"])
    # Ours wrote its LoRA where it was told (the run really trained).
    assert list((tmp_path / "work" / "runs").glob("*.safetensors"))


def test_full_mode_without_a_gpu_refuses(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", SCRIPT, "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=300, check=False,
                          env={**os.environ, "GPU_CHECK_DRY": "0"})
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
    assert not list(tmp_path.iterdir())  # refused before building anything
