"""`run` evaluates the egress canary (ST_POLICY_CANARY): a reachable canary stops it before Vault."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

# A site profile that makes the canary rule a deny on top of dev (dev only warns); the native
# venv is not reachable by uid 10001 here, so training as root is only a warning.
_PROFILE = ("name: canary-site\ndescription: dev, but egress must be blocked\nextends: dev\n"
            "override:\n  - id: network.canary_blocked\n    action: deny\n"
            "  - id: process.non_root\n    action: warn\n")


def _run(tmp_path: Path, canary: str | None) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "site.yaml"
    profile.write_text(_PROFILE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "ST_"))}
    env.update(ST_CIPHER_DIR=str(tmp_path / "cipher"), ST_MOUNTPOINT=str(tmp_path / "mnt"),
               ST_STATE_DIR=str(tmp_path / "state"), ST_TRAIN_UID="none",
               # Nothing listens here: a run that got past the policy fails at Vault (exit 4).
               VAULT_ADDR="http://127.0.0.1:9", VAULT_TOKEN="canary-test-not-a-token")
    if canary:
        env["ST_POLICY_CANARY"] = canary
    return subprocess.run([sys.executable, "-m", "entrypoint.cli", "run", "--policy", str(profile),
                           "--pretrained_model_name_or_path", "models/x",
                           "--train_data_dir", "datasets/x"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_reachable_canary_denies_the_run(tmp_path: Path) -> None:
    with socket.socket() as listener:  # the "egress" target: a loopback listener we own
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        proc = _run(tmp_path, f"127.0.0.1:{port}")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "[network.canary_blocked]" in proc.stderr and "1 rule failed" in proc.stderr
    assert "canary-test-not-a-token" not in proc.stdout + proc.stderr


def test_unreachable_canary_passes_to_vault(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = _run(tmp_path, f"127.0.0.1:{port}")
    assert proc.returncode == 4, proc.stderr[-2000:]  # past the policy, stopped at Vault
