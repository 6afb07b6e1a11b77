"""The trainer runs on tcmalloc (entrypoint/allocator.py): `train` started directly re-execs
itself under LD_PRELOAD, `run`'s child gets it from the supervisor, ST_ALLOCATOR=system keeps
glibc, and the allocator changes no result (bit-identical LoRA tensors)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from train_support import BIN, REPO_ROOT, cli_env

from entrypoint.run.trainer_child import run_trainer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACTIVE = "memory allocator: "


def _args(tiny_model: Any, tiny_dataset: Path, out: Path) -> list[str]:
    return ["--log-level", "INFO", "--pretrained_model_name_or_path", str(tiny_model.single_file),
            "--train_data_dir", str(tiny_dataset), "--caption_extension", ".txt",
            "--resolution", "64", "--output_dir", str(out), "--max_train_steps", "3",
            "--seed", "3", "--network_dim", "4", "--network_alpha", "4"]


def _allocator(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ACTIVE in ln]
    assert len(lines) == 1, text
    return lines[0].split(ACTIVE, 1)[1].strip()


def _tensors(path: Path) -> dict[str, bytes]:
    from safetensors.torch import load_file

    return {k: v.numpy().tobytes() for k, v in load_file(path).items()}


def test_direct_train_reexecs_onto_tcmalloc_with_identical_results(
        tiny_model: Any, tiny_dataset: Path, tmp_path: Path) -> None:
    results = {}
    for choice in ("", "system"):
        env = {k: v for k, v in cli_env().items() if k != "LD_PRELOAD"}
        env["ST_ALLOCATOR"] = choice
        out = tmp_path / (choice or "default")
        proc = subprocess.run([str(BIN / "secure-trainer"), "train",
                               *_args(tiny_model, tiny_dataset, out)], capture_output=True,
                              text=True, timeout=300, env=env, cwd=REPO_ROOT, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[choice] = (_allocator(proc.stderr), _tensors(out / "last.safetensors"))
    assert results[""][0] == "tcmalloc"
    assert results["system"][0] == "system"
    assert results[""][1] == results["system"][1]  # an allocator changes no arithmetic


def test_run_child_gets_tcmalloc_from_the_supervisor(
        tiny_model: Any, tiny_dataset: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The child sees SECURE_TRAINER_RUN_CHILD and never decides by itself: whatever it runs on
    came from the environment `run` built for it."""
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    seen = {}
    for choice in ("", "system"):
        monkeypatch.setenv("ST_ALLOCATOR", choice)
        lines: list[str] = []
        out = tmp_path / (choice or "default")
        code = run_trainer(_args(tiny_model, tiny_dataset, out), cwd=tmp_path, tmp=tmp_path,
                           ids=None, extra_env={"OMP_NUM_THREADS": "1"}, redact=[],
                           echo=lines.append)
        assert code == 0, lines[-20:]
        seen[choice] = _allocator("\n".join(lines))
    assert seen == {"": "tcmalloc", "system": "system"}
    assert os.environ.get("LD_PRELOAD") is None  # the supervisor itself never preloads
