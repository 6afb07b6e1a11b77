"""Plain `secure-trainer train` inside an open workspace registers its LoRA with lineage (the
images it read, the base model's hash, the artefacts of its output, governance and expiry from
env); with its output outside the workspace it says, in one line, that it did not register.

Real OpenBao, gocryptfs and trainer (tiny model, 2 steps).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from entrypoint.cli import main
from entrypoint.run.train_register import NOT_REGISTERED
from entrypoint.vault.devserver import DevVault
from secure_trainer.registry import tree_sha256
from tests.integration.run_support import prepare

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]


def _cli(args: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    for name in [n for n in os.environ if n.startswith(("VAULT_", "ST_", "SECURE_TRAINER_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _train_args(mnt: Path, output_dir: Path) -> list[str]:
    return ["train", "--quiet", "--pretrained_model_name_or_path", str(mnt / "models" / "tiny"),
            "--train_data_dir", str(mnt / "datasets" / "demo"), "--caption_extension", ".txt",
            "--resolution", "64", "--network_dim", "4", "--learning_rate", "1e-3", "--seed", "1",
            "--output_name", "lora", "--output_dir", str(output_dir), "--max_train_steps", "2",
            "--save_every_n_steps", "1"]


def test_train_in_workspace_registers_outside_says_not(
        dev_vault: DevVault, tmp_path: Path, tiny_model: Any, tiny_dataset: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    case = prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)
    with case.opened() as ws:
        mnt = ws.mountpoint
        env = {"ST_MOUNTPOINT": str(mnt), "ST_OWNER": "team-a", "ST_PURPOSE": "demo",
               "ST_LEGAL_BASIS": "consent", "ST_RETENTION_DAYS": "7"}
        images = sorted(p for p in (mnt / "datasets" / "demo").rglob("*")
                        if p.suffix in (".png", ".jpg"))
        image_hashes = sorted({hashlib.sha256(p.read_bytes()).hexdigest() for p in images})

        code, out, err = _cli(_train_args(mnt, mnt / "outputs" / "t1"), env, capsys, monkeypatch)
        assert code == 0, err
        assert "registry: registered LoRA" in err and NOT_REGISTERED not in err
        assert len([ln for ln in out.splitlines() if ln.strip()]) == 1  # the summary only
        code, out, _ = _cli(["registry", "list", "--json"], env, capsys, monkeypatch)
        (lora,) = json.loads(out)
        code, out, _ = _cli(["registry", "show", lora["id"], "--json", "--show-paths"], env,
                            capsys, monkeypatch)
        shown = json.loads(out)
        assert shown["owner"] == "team-a" and shown["legal_basis"] == "consent"
        assert shown["expires"] is not None and shown["path"] == "outputs/t1/lora.safetensors"
        assert shown["base_model_sha256"] == tree_sha256(mnt / "models" / "tiny")
        assert shown["images"] == len(image_hashes) > 0
        arts = {a["path"]: a["kind"] for a in shown["artefacts"]}
        steps = [p for p in arts if "-step" in p]
        assert steps and all(arts[p] == "lora" for p in steps)
        on_disk = {p.relative_to(mnt).as_posix() for p in (mnt / "outputs" / "t1").iterdir()}
        assert on_disk - {"outputs/t1/lora.safetensors"} <= set(arts)

        # Output outside the workspace: trained, one line says it was not registered.
        code, out, err = _cli(_train_args(mnt, tmp_path / "plain"), env, capsys, monkeypatch)
        assert code == 0, err
        assert err.count(NOT_REGISTERED) == 1 and "registered LoRA" not in err
        code, out, _ = _cli(["registry", "list", "--json"], env, capsys, monkeypatch)
        assert [lo["id"] for lo in json.loads(out)] == [lora["id"]]
