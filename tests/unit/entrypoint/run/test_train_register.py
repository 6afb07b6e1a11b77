"""Plain `train` registration: when it must not register (under `run`, outside a workspace),
and which files of an output dir are its artefacts."""

from __future__ import annotations

from pathlib import Path

from entrypoint.run.train_register import RUN_CHILD_ENV, output_artefacts, target_for
from entrypoint.run.trainer_child import trainer_env


def test_run_child_env_carries_the_marker(tmp_path: Path) -> None:
    env = trainer_env(tmp_path)
    assert env[RUN_CHILD_ENV] == "1"
    assert not [k for k in env if k.startswith(("ST_", "VAULT_"))]


def test_no_target_under_run_or_outside_a_mounted_workspace(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert target_for(out, {"ST_MOUNTPOINT": str(tmp_path), RUN_CHILD_ENV: "1"}) is None
    assert target_for(out, {}) is None
    assert target_for(out, {"ST_MOUNTPOINT": str(tmp_path / "missing")}) is None
    # A plain folder is not an open (gocryptfs) workspace.
    assert target_for(out, {"ST_MOUNTPOINT": str(tmp_path)}) is None


def test_output_artefacts_are_the_runs_own_files(tmp_path: Path) -> None:
    (tmp_path / "lora.safetensors").write_bytes(b"l")
    (tmp_path / "lora-step00000002.safetensors").write_bytes(b"s")
    (tmp_path / "lora-step00000002-state").mkdir()
    (tmp_path / "lora-step00000002-state" / "optimizer.pt").write_bytes(b"o")
    (tmp_path / "lora.dp.json").write_text("{}")
    (tmp_path / "other.safetensors").write_bytes(b"x")  # another training's output
    logs = tmp_path / "logs"
    logs.mkdir()
    kinds = {a.path.relative_to(tmp_path).as_posix(): a.kind.value
             for a in output_artefacts(tmp_path, "lora", logs)}
    assert kinds == {"lora.safetensors": "lora", "lora-step00000002.safetensors": "lora",
                     "lora-step00000002-state/optimizer.pt": "state",
                     "lora-step00000002-state": "state", "lora.dp.json": "dp_record",
                     "logs": "tensorboard"}

