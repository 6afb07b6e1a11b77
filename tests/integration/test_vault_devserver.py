"""`secure-trainer dev vault` and DevVault: a real detached OpenBao dev server, usable through the
printed env, whose root token is in no argv, file or output, and which `--stop` ends by PID."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from entrypoint.secret import Secret
from entrypoint.vault.client import VaultClient
from entrypoint.vault.devserver import PID_FILE, DevVault
from entrypoint.vault.settings import VaultSettings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "entrypoint.cli", "dev", "vault", *args],
                          env={"PATH": os.environ["PATH"]}, capture_output=True, text=True,
                          check=False, timeout=60, cwd=REPO)


def parse_exports(stdout: str) -> dict[str, str]:
    env = {}
    for line in stdout.splitlines():
        if line.startswith("#"):
            continue
        assert line.startswith("export "), line
        name, _, value = line[len("export "):].partition("=")
        env[name] = shlex.split(value)[0]
    return env


def test_dev_vault_cli_start_use_stop(tmp_path: Path) -> None:
    workdir = tmp_path / "dv"
    proc = run_cli("--workdir", str(workdir))
    assert proc.returncode == 0, proc.stderr
    pid = int((workdir / PID_FILE).read_text().split()[0])
    try:
        env = parse_exports(proc.stdout)
        assert env["ST_VAULT_AUTH"] == "approle" and env["VAULT_ADDR"].startswith("http://127.0.0.1:")
        for name in ("ST_VAULT_ROLE_ID_FILE", "ST_VAULT_SECRET_ID_FILE"):
            assert Path(env[name]).stat().st_mode & 0o777 == 0o600
        # Detached: its own session, so it outlives the CLI process that started it.
        assert os.getsid(pid) == pid
        # The root token reached the server by environment only: not in argv, files, output.
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        token = next(e.split(b"=", 1)[1] for e in environ
                     if e.startswith(b"BAO_DEV_ROOT_TOKEN_ID="))
        assert token and token not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert token.decode() not in proc.stdout + proc.stderr
        for f in workdir.rglob("*"):
            if f.is_file():
                assert token not in f.read_bytes()
        # The printed env is enough for a client: AppRole login, write and read the key.
        with VaultClient.from_settings(VaultSettings.from_env(env)) as client:
            client.login()
            written = Secret.generate()
            version = client.write_passphrase(written, cas=0)
            assert client.read_passphrase() == (written, version)
        # A second start in the same workdir is refused (exit 2), the first keeps running.
        again = run_cli("--workdir", str(workdir))
        assert again.returncode == 2 and "already recorded" in again.stderr
    finally:
        stopped = run_cli("--stop", "--workdir", str(workdir))
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
    assert not any(workdir.iterdir())
    assert run_cli("--stop", "--workdir", str(workdir)).returncode == 2


def test_stop_ignores_a_pid_file_that_names_another_process(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / PID_FILE).write_text(f"{sleeper.pid} 8200\n")
        assert DevVault.stop_pidfile(tmp_path)
        assert sleeper.poll() is None  # not ours to kill: still running
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)


def test_fixture_server_is_loopback_with_private_files(dev_vault: DevVault) -> None:
    assert dev_vault.addr.startswith("http://127.0.0.1:")
    assert dev_vault.role_id_file.stat().st_mode & 0o777 == 0o600
    assert dev_vault.secret_id_file.stat().st_mode & 0o777 == 0o600
    assert repr(dev_vault.root_token) == "Secret(***)"
    assert dev_vault.root_token.reveal_str() not in repr(dev_vault)
    assert dev_vault.env()["ST_VAULT_AUTH"] == "approle"
