"""`secure-trainer run` end to end: real OpenBao, real gocryptfs, unprivileged training child."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from entrypoint.audit.applog import verify
from entrypoint.vault.client import VaultClient
from entrypoint.vault.devserver import DevVault
from entrypoint.vault.settings import VaultSettings
from entrypoint.workspace.gocryptfs import Gocryptfs, Workspace
from entrypoint.workspace.keys import KeyManager


def _reachable() -> bool:
    from entrypoint.run.trainer_child import usable_by as _usable_by

    return _usable_by(Path(sys.executable), 10001)


pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]


def test_run_trains_inside_workspace_and_leaves_nothing(dev_vault: DevVault, tmp_path: Path,
                                                        tiny_model: object,
                                                        tiny_dataset: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    env = dev_vault.add_workspace_role(f"run-{tag}", tmp_path / "creds",
                                       key_path=f"st-run-{tag}/workspace",
                                       audit_key_path=f"st-run-{tag}/audit")
    cipher, mnt = tmp_path / "cipher", tmp_path / "mnt"
    fs = Gocryptfs()
    with VaultClient.from_settings(VaultSettings.from_env(env)) as vault:
        vault.login()
        km = KeyManager(vault, fs, cipher)
        km.init()
        passphrase = km.open_passphrase()
        key_text = passphrase.reveal_str()
        ws = Workspace(fs, cipher, mnt)
        ws.open(passphrase)
        try:
            shutil.copytree(tiny_model.diffusers_dir, ws.models_dir / "tiny")  # type: ignore[attr-defined]
            shutil.copytree(tiny_dataset, ws.datasets_dir / "demo")
        finally:
            ws.close()
    policy = "dev"
    if not _reachable():
        # The native venv lives under /root, which the training uid cannot traverse; a site
        # profile downgrades the non-root rule for this test only (the image test covers the drop).
        policy_file = tmp_path / "native-dev.yaml"
        policy_file.write_text("name: native-dev\ndescription: native test run as root\n"
                               "extends: dev\noverride:\n  - id: process.non_root\n"
                               "    action: warn\n")
        policy = str(policy_file)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "ST_"))}
    run_env.update(env, ST_CIPHER_DIR=str(cipher), ST_MOUNTPOINT=str(mnt),
                   ST_STATE_DIR=str(tmp_path / "state"), OMP_NUM_THREADS="1",
                   # host mode: rules are the host's; the run only records what it sees.
                   ST_AUDIT_MODE="host",
                   # coupling: the venv lives under /root here; the image drops to uid 10001.
                   ST_TRAIN_UID="none" if not _reachable() else "10001")
    proc = subprocess.run(
        [sys.executable, "-m", "entrypoint.cli", "run", "--policy", policy,
         "--pretrained_model_name_or_path", "models/tiny", "--train_data_dir", "datasets/demo",
         "--caption_extension", ".txt", "--resolution", "64", "--max_train_steps", "3",
         "--network_dim", "4", "--learning_rate", "1e-3", "--seed", "1", "--output_name", "lora"],
        env=run_env, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "[train]" in out and "done: run" in out
    assert key_text not in out and str(tmp_path) not in out
    assert not fs.is_mounted(mnt) and not any(mnt.iterdir())
    assert not (tmp_path / "state" / "run.marker").exists()
    # The LoRA exists only inside the encrypted store.
    assert list(tmp_path.rglob("lora.safetensors")) == []
    with VaultClient.from_settings(VaultSettings.from_env(env)) as vault:
        vault.login()
        passphrase = KeyManager(vault, fs, cipher).open_passphrase()
        audit_key = vault.audit_key()
        ws = Workspace(fs, cipher, mnt)
        ws.open(passphrase)
        try:
            loras = list(ws.runs_dir.glob("*/lora.safetensors"))
            assert len(loras) == 1
            manifest = json.loads((loras[0].parent / "manifest.json").read_text())
            assert len(manifest["lora_sha256"]) == 64 and manifest["dataset_sha256"]
            result = verify(ws.audit_dir / "app.jsonl", audit_key)
            assert result.ok and result.records >= 6, result.reason
            events = [json.loads(line)["event"]
                      for line in (ws.audit_dir / "app.jsonl").read_text().splitlines()]
            assert {"policy", "vault_login", "workspace_mounted", "audit_rules_host",
                    "train_end", "sealed", "teardown"} <= set(events)
            assert "audit_rules_loaded" not in events  # host mode never loads rules
            assert not any((ws.tmp_dir).iterdir())
        finally:
            ws.close()


def test_sigterm_during_training_tears_down(dev_vault: DevVault, tmp_path: Path,
                                            tiny_model: object, tiny_dataset: Path) -> None:
    """SIGTERM mid-training → exit 143, workspace unmounted, run marker cleared, run tmp wiped."""
    import signal
    import time

    tag = uuid.uuid4().hex[:8]
    env = dev_vault.add_workspace_role(f"sig-{tag}", tmp_path / "creds",
                                       key_path=f"st-sig-{tag}/workspace",
                                       audit_key_path=f"st-sig-{tag}/audit")
    cipher, mnt = tmp_path / "cipher", tmp_path / "mnt"
    fs = Gocryptfs()
    with VaultClient.from_settings(VaultSettings.from_env(env)) as vault:
        vault.login()
        km = KeyManager(vault, fs, cipher)
        km.init()
        ws = Workspace(fs, cipher, mnt)
        ws.open(km.open_passphrase())
        try:
            shutil.copytree(tiny_model.diffusers_dir, ws.models_dir / "tiny")  # type: ignore[attr-defined]
            shutil.copytree(tiny_dataset, ws.datasets_dir / "demo")
        finally:
            ws.close()
    policy_file = tmp_path / "native-dev.yaml"
    policy_file.write_text("name: native-dev\ndescription: native test run as root\n"
                           "extends: dev\noverride:\n  - id: process.non_root\n    action: warn\n")
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "ST_"))}
    run_env.update(env, ST_CIPHER_DIR=str(cipher), ST_MOUNTPOINT=str(mnt),
                   ST_STATE_DIR=str(tmp_path / "state"), OMP_NUM_THREADS="1",
                   ST_TRAIN_UID="none" if not _reachable() else "10001")
    proc = subprocess.Popen(
        [sys.executable, "-m", "entrypoint.cli", "run", "--policy", str(policy_file),
         "--pretrained_model_name_or_path", "models/tiny", "--train_data_dir", "datasets/demo",
         "--caption_extension", ".txt", "--resolution", "64", "--max_train_steps", "5000",
         "--output_name", "lora"], env=run_env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("[train]") or time.monotonic() > deadline:
            break
    time.sleep(5)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, "".join(seen) + rest
    assert not fs.is_mounted(mnt) and not any(mnt.iterdir())
    assert not (tmp_path / "state" / "run.marker").exists()
    with VaultClient.from_settings(VaultSettings.from_env(env)) as vault:
        vault.login()
        ws = Workspace(fs, cipher, mnt)
        ws.open(KeyManager(vault, fs, cipher).open_passphrase())
        try:
            assert not any(ws.tmp_dir.iterdir())
            assert list(ws.runs_dir.glob("*/lora.safetensors")) == []
        finally:
            ws.close()
