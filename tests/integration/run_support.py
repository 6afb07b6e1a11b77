"""Shared helpers for the `secure-trainer run` integration tests: a prepared workspace, the run
as a subprocess whose output is read on a thread, Vault token inspection, kernel rule listing.

Everything is real: OpenBao (dev server), gocryptfs, auditctl. Processes are only ever signalled
by the PID this module started.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entrypoint.audit.auditctl import Auditctl
from entrypoint.vault.client import VaultClient
from entrypoint.vault.devserver import DevVault
from entrypoint.vault.settings import VaultSettings
from entrypoint.workspace.gocryptfs import Gocryptfs, Workspace
from entrypoint.workspace.keys import KeyManager

TRAIN_ARGS = ["--pretrained_model_name_or_path", "models/tiny", "--train_data_dir",
              "datasets/demo", "--caption_extension", ".txt", "--resolution", "64",
              "--network_dim", "4", "--learning_rate", "1e-3", "--seed", "1",
              "--output_name", "lora"]
PHASES = ("policy", "vault", "workspace", "audit", "train", "seal")


@dataclass
class RunCase:
    """One prepared workspace (keys in Vault, model and dataset imported) and its env."""

    tmp_path: Path
    role: str
    env: dict[str, str]
    passphrase: str
    fs: Gocryptfs = field(default_factory=Gocryptfs)

    @property
    def cipher(self) -> Path:
        """The gocryptfs cipher dir."""
        return self.tmp_path / "cipher"

    @property
    def mnt(self) -> Path:
        """The mountpoint."""
        return self.tmp_path / "mnt"

    @property
    def state(self) -> Path:
        """The run's state dir (marker, loaded-rules list)."""
        return self.tmp_path / "state"

    @property
    def creds(self) -> Path:
        """Where role_id / secret_id live."""
        return self.tmp_path / "creds"

    def run_env(self, **extra: str) -> dict[str, str]:
        """The environment of `secure-trainer run` for this case (no inherited VAULT_/ST_)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "ST_"))}
        env.update(self.env, ST_CIPHER_DIR=str(self.cipher), ST_MOUNTPOINT=str(self.mnt),
                   ST_STATE_DIR=str(self.state), OMP_NUM_THREADS="1",
                   ST_TRAIN_UID="10001" if reachable() else "none")
        env.update(extra)
        return env

    def policy(self) -> str:
        """`dev`, or (venv unreachable for uid 10001, so no drop) dev with non-root as a warning."""
        if reachable():
            return "dev"
        # The native venv lives under /root here, which the training uid cannot traverse; a site
        # profile downgrades the non-root rule for these tests (the image test covers the drop).
        path = self.tmp_path / "native-dev.yaml"
        path.write_text("name: native-dev\ndescription: native test run as root\n"
                        "extends: dev\noverride:\n  - id: process.non_root\n"
                        "    action: warn\n")
        return str(path)

    @contextmanager
    def opened(self) -> Iterator[Workspace]:
        """The workspace mounted for inspection (own Vault login, revoked on exit)."""
        with VaultClient.from_settings(VaultSettings.from_env(self.env)) as vault:
            vault.login()
            ws = Workspace(self.fs, self.cipher, self.mnt)
            ws.open(KeyManager(vault, self.fs, self.cipher).open_passphrase())
            try:
                yield ws
            finally:
                ws.close()

    def audit_key_hex(self) -> str:
        """The app log's HMAC key (hex), read from Vault by the test."""
        with VaultClient.from_settings(VaultSettings.from_env(self.env)) as vault:
            vault.login()
            return vault.audit_key().reveal_str()


@dataclass
class RawVault:
    """A dev OpenBao whose raw audit log shows every token it issues (tests only)."""

    vault: DevVault
    log: Path


def raw_vault_server(factory: Any) -> Iterator[RawVault]:
    """Body of a module fixture: a dev OpenBao with a raw file audit device, stopped after."""
    workdir = factory.mktemp("bao-raw")
    log = workdir / "raw-audit.log"
    vault = DevVault.start(workdir=workdir / "server", unsafe_raw_audit_log=log)
    try:
        yield RawVault(vault, log)
    finally:
        vault.stop()


def reachable() -> bool:
    """Whether the unprivileged training uid can reach this interpreter."""
    from entrypoint.run.trainer_child import usable_by

    return usable_by(Path(sys.executable), 10001)


def prepare(vault: DevVault, tmp_path: Path, tiny_model: Any, dataset: Path) -> RunCase:
    """Keys init, then import the tiny model and `dataset` into a fresh workspace."""
    tag = uuid.uuid4().hex[:8]
    role = f"run-{tag}"
    env = vault.add_workspace_role(role, tmp_path / "creds", key_path=f"st-{tag}/workspace",
                                   audit_key_path=f"st-{tag}/audit")
    fs = Gocryptfs()
    with VaultClient.from_settings(VaultSettings.from_env(env)) as client:
        client.login()
        km = KeyManager(client, fs, tmp_path / "cipher")
        km.init()
        passphrase = km.open_passphrase()
        text = passphrase.reveal_str()
        ws = Workspace(fs, tmp_path / "cipher", tmp_path / "mnt")
        ws.open(passphrase)
        try:
            shutil.copytree(tiny_model.diffusers_dir, ws.models_dir / "tiny")
            shutil.copytree(dataset, ws.datasets_dir / "demo")
        finally:
            ws.close()
    return RunCase(tmp_path=tmp_path, role=role, env=env, passphrase=text, fs=fs)


class RunProcess:
    """`secure-trainer run` as a subprocess; its output is collected on a reader thread."""

    def __init__(self, case: RunCase, *, steps: int, policy: str | None = None,
                 extra_env: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        argv = [sys.executable, "-m", "entrypoint.cli", "run", "--policy",
                policy or case.policy(), *TRAIN_ARGS,
                "--max_train_steps", str(steps), *extra_args]
        self.proc = subprocess.Popen(argv, env=case.run_env(**(extra_env or {})),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, prefix: str, timeout: float = 300.0) -> bool:
        """Consume output until a line starts with `prefix`; False if the run ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)
                return False
            self.lines.append(line)
            if line.startswith(prefix):
                return True
        return False

    def signal(self, signum: int) -> None:
        """Send `signum` to the run (our own child, by PID)."""
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 300.0) -> tuple[int, str]:
        """Wait for the exit; (exit code, whole output)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=30)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code, "\n".join(self.lines)


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc/*/stat)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(name))
    return found


def gone(pid: int) -> bool:
    """True when `pid` no longer runs (absent or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until(check: Any, timeout: float, interval: float = 0.1) -> bool:
    """Bounded poll: True as soon as `check()` is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())


def our_kernel_rules(tmp_path: Path) -> list[str]:
    """Kernel rules with our key that name a path of this test (other runs' rules excluded)."""
    return [r for r in Auditctl().ours() if str(tmp_path) in r]


def live_role_tokens(vault: DevVault, role: str) -> int:
    """How many unexpired tokens an AppRole role has (root token, accessor listing)."""
    client = vault.root_client()
    try:
        accessors = client.list("auth/token/accessors")["data"]["keys"]
        return sum(1 for accessor in accessors
                   if _accessor_role(client, accessor) == role)
    finally:
        client.adapter.close()


def _accessor_role(client: Any, accessor: str) -> str | None:
    import hvac.exceptions

    try:
        info = client.auth.token.lookup_accessor(accessor)["data"]
    except hvac.exceptions.VaultError:
        return None  # revoked between the listing and the lookup
    return (info.get("meta") or {}).get("role_name")


def raw_login_tokens(raw_log: Path, role: str) -> list[str]:
    """Tokens the raw audit log shows issued by AppRole login for `role`."""
    tokens: list[str] = []
    if not raw_log.exists():
        return tokens
    for line in raw_log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        auth = (entry.get("response") or {}).get("auth") or {}
        if entry.get("type") == "response" and (auth.get("metadata") or {}).get(
                "role_name") == role and auth.get("client_token"):
            tokens.append(auth["client_token"])
    return tokens


def token_works(vault: DevVault, token: str) -> bool:
    """True when `token` can still look itself up."""
    import hvac

    client = hvac.Client(url=vault.addr, token=token, timeout=10)
    try:
        client.auth.token.lookup_self()
        return True
    except Exception:  # noqa: BLE001 - hvac raises Forbidden for a revoked token
        return False
    finally:
        client.adapter.close()


def app_events(ws: Workspace) -> list[dict[str, Any]]:
    """Every record of the app audit log."""
    path = ws.audit_dir / "app.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def kill_pid(pid: int) -> None:
    """SIGKILL a process this test started (directly or through the run)."""
    os.kill(pid, signal.SIGKILL)
