"""The `run` lifecycle: policy → Vault → key → mount → audit log → train (unprivileged) → seal → teardown.

Every phase writes one app-audit record; teardown (wipe the run's tmp, unmount, revoke the token,
clear the run marker) runs on success, error and SIGINT/SIGTERM (raised as `Interrupted`).
SECURITY: the passphrase only travels Vault → bytearray → gocryptfs stdin and is wiped after the
mount; the training child gets a minimal env (no VAULT_*), its output passes the redactor.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from entrypoint.applog import AppAuditLog
from entrypoint.errors import (
    ConfigError,
    DataRejected,
    SecureTrainerError,
    TrainingError,
    WorkspaceError,
)
from entrypoint.keys import KeyManager
from entrypoint.privileges import preexec_drop
from entrypoint.redact import Redactor
from entrypoint.runmarker import clear_run_marker, read_run_marker, write_run_marker
from entrypoint.vault import VaultClient
from entrypoint.wipe import wipe
from entrypoint.workspace import Gocryptfs, Workspace

AUDIT_LOG = "app.jsonl"  # coupling: registry_cmd AUDIT_LOG_RELPATH = audit/app.jsonl
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
# Exit codes of the child that keep their meaning for the user (config / data problems).
_CHILD_ERRORS: dict[int, type[SecureTrainerError]] = {2: ConfigError, 8: DataRejected}


@dataclass(frozen=True)
class RunSettings:
    """What one `run` needs; built from flags/env once, in `from_env`."""

    cipher_dir: Path
    mountpoint: Path
    state_dir: Path
    policy: str
    train_args: tuple[str, ...]
    train_ids: tuple[int, int] | None = (10001, 10001)
    owner: str = "unspecified"
    purpose: str = "unspecified"
    legal_basis: str = "unspecified"
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str], *, policy: str, train_args: list[str]) -> RunSettings:
        """Read ST_CIPHER_DIR, ST_MOUNTPOINT, ST_STATE_DIR, ST_TRAIN_UID/GID. Raises ConfigError."""
        try:
            cipher, mnt = Path(env["ST_CIPHER_DIR"]), Path(env["ST_MOUNTPOINT"])
        except KeyError:
            raise ConfigError("set ST_CIPHER_DIR and ST_MOUNTPOINT (the encrypted workspace)") from None
        raw_uid = env.get("ST_TRAIN_UID", "10001")
        ids: tuple[int, int] | None = None
        if raw_uid != "none" and os.geteuid() == 0:
            try:
                uid = int(raw_uid)
                ids = (uid, int(env.get("ST_TRAIN_GID", str(uid))))
            except ValueError:
                raise ConfigError("ST_TRAIN_UID/ST_TRAIN_GID must be numbers or 'none'") from None
        return cls(cipher_dir=cipher, mountpoint=mnt,
                   state_dir=Path(env.get("ST_STATE_DIR", "/run/secure-trainer")),
                   policy=policy, train_args=tuple(train_args),
                   train_ids=ids,
                   owner=env.get("ST_OWNER", "unspecified"),
                   purpose=env.get("ST_PURPOSE", "unspecified"),
                   legal_basis=env.get("ST_LEGAL_BASIS", "unspecified"))


def _usable_by(path: Path, uid: int) -> bool:
    """True when every directory on the way to `path` lets `uid` (as 'other') traverse it."""
    for parent in [*reversed(path.resolve().parents), path.resolve()]:
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            return False
    return True


def _has_flag(args: tuple[str, ...], name: str) -> bool:
    return any(a == name or a.startswith(name + "=") for a in args)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Lifecycle:
    """One secure run; side-effecting clients are passed in."""

    def __init__(self, settings: RunSettings, *, vault: VaultClient, gocryptfs: Gocryptfs,
                 echo: Callable[[str], None]) -> None:
        self._s = settings
        self._vault = vault
        self._fs = gocryptfs
        self._echo = echo
        self._ws = Workspace(gocryptfs, settings.cipher_dir, settings.mountpoint)
        self._log: AppAuditLog | None = None
        self._pending: list[tuple[str, dict[str, object]]] = []
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]

    def _audit(self, event: str, **fields: object) -> None:
        if self._log is None:
            self._pending.append((event, fields))
        else:
            self._log.append(event, run_id=self.run_id, **fields)

    def _phase(self, name: str) -> None:
        self._echo(f"[{name}]")

    def _recover_stale(self) -> None:
        marker = read_run_marker(self._s.state_dir)
        if marker is not None and not marker.process_alive():
            self._fs.unmount(Path(marker.mountpoint))
            clear_run_marker(self._s.state_dir)
            self._audit("recovered_stale_run", stale_run_id=marker.run_id)
        elif marker is not None:
            raise WorkspaceError("another run is active on this machine (run marker held)")

    def _preflight(self, phase: str, train: object | None) -> None:
        from entrypoint.policy import PolicyContext, load_profile
        from entrypoint.policy.preflight import preflight

        ctx = PolicyContext(profile=load_profile(self._s.policy), train=train,  # type: ignore[arg-type]
                            workspace_dir=self._s.mountpoint, cipher_dir=self._s.cipher_dir,
                            drop_ids=self._s.train_ids)
        try:
            decision = preflight(phase, ctx)  # type: ignore[arg-type]
        except SecureTrainerError as err:
            dec = getattr(err, "decision", None)
            self._audit("policy_denied", **{"phase": phase,
                                            **(dec.to_audit_fields() if dec is not None else {})})
            raise
        self._audit("policy", **{"phase": phase, **decision.to_audit_fields()})

    def execute(self) -> Path:
        """Run every phase; returns the LoRA's path inside the workspace. Raises our typed errors."""
        s = self._s
        write_marker = False
        try:
            self._recover_stale()
            write_run_marker(s.state_dir, self.run_id, s.mountpoint)
            write_marker = True
            self._phase("policy")
            self._preflight("pre-mount", None)
            self._phase("vault")
            self._vault.login()
            self._vault.start_renewal()
            self._audit("vault_login")
            passphrase = KeyManager(self._vault, self._fs, s.cipher_dir).open_passphrase()
            self._phase("workspace")
            try:
                self._ws.open(passphrase)
            finally:
                passphrase.wipe()
            audit_key = self._vault.audit_key(create=True)
            self._log = AppAuditLog(self._ws.audit_dir / AUDIT_LOG, audit_key)
            for event, fields in self._pending:
                self._log.append(event, run_id=self.run_id, **fields)
            self._pending.clear()
            self._audit("workspace_mounted")
            return self._train_and_seal()
        finally:
            self._teardown(write_marker)

    def _train_and_seal(self) -> Path:
        from secure_trainer.config import parse_train_args

        s = self._s
        run_dir = self._ws.runs_dir / self.run_id
        tmp = self._ws.tmp_dir / self.run_id
        args = list(s.train_args)
        if not _has_flag(s.train_args, "--output_dir"):
            args += ["--output_dir", f"runs/{self.run_id}"]
        for d in (run_dir, tmp):
            d.mkdir(parents=True, exist_ok=True)
            if s.train_ids:
                os.chown(d, *s.train_ids)
        cwd = os.getcwd()
        os.chdir(s.mountpoint)  # relative trainer paths resolve inside the workspace
        try:
            settings = parse_train_args(args, warn=lambda _m: None)
            self._preflight("post-mount", settings)
        finally:
            os.chdir(cwd)  # never hold the mount busy past this point
        self._phase("train")
        self._audit("train_start", uid=s.train_ids[0] if s.train_ids else os.geteuid())
        started = time.time()
        code = self._spawn_trainer(args, tmp)
        self._audit("train_end", exit_code=code, seconds=round(time.time() - started, 1))
        if code:
            raise _CHILD_ERRORS.get(code, TrainingError)(f"training failed (trainer exit {code})")
        lora = run_dir / f"{settings.output_name}.safetensors"
        if not lora.is_file():
            raise TrainingError("training finished but wrote no LoRA")
        self._phase("seal")
        self._seal(settings, lora, args, started)
        return lora

    def _spawn_trainer(self, args: list[str], tmp: Path) -> int:
        s = self._s
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "HOME": str(tmp), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
        for var in ("TMPDIR", "HF_HOME", "TORCH_HOME", "XDG_CACHE_HOME", "TRITON_CACHE_DIR",
                    "PIP_CACHE_DIR", "CUDA_CACHE_PATH", "MPLCONFIGDIR"):
            env[var] = str(tmp)
        env.update(s.extra_env)
        if s.train_ids and not _usable_by(Path(sys.executable), s.train_ids[0]):
            raise ConfigError("the Python interpreter is not reachable by the training user; "
                              "install under /opt or /usr (the image does), or set "
                              "ST_TRAIN_UID=none for a native dev run")
        redactor = Redactor()
        redactor.register(str(s.mountpoint))
        redactor.register(str(s.cipher_dir))
        proc = subprocess.Popen(
            [sys.executable, "-m", "entrypoint.cli", "train", *args], cwd=s.mountpoint, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=preexec_drop(*s.train_ids) if s.train_ids else None)
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                self._echo(redactor.scrub(raw.decode("utf-8", "replace").rstrip("\n")))
            return proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait(timeout=30)
            raise

    def _seal(self, settings: object, lora: Path, args: list[str], started: float) -> None:
        from secure_trainer.registry import Registry, file_sha256

        root = self._s.mountpoint
        data_files = sorted(p for ds in settings.datasets for sub in ds.subsets  # type: ignore[attr-defined]
                            for p in (root / sub.image_dir).iterdir()
                            if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
        hashes = sorted({file_sha256(p) for p in data_files})
        lora_sha = _sha256(lora)
        manifest = {"run_id": self.run_id, "config_sha256": hashlib.sha256(
            json.dumps(args).encode()).hexdigest(), "dataset_sha256": hashes,
            "lora_sha256": lora_sha, "started": round(started, 1), "sealed": round(time.time(), 1)}
        (lora.parent / "manifest.json").write_text(json.dumps(manifest, indent=2))
        Registry(self._ws.registry_path).register_run(
            self.run_id, lora, None, "run", hashes, {}, self._s.owner, self._s.purpose,
            self._s.legal_basis)
        self._audit("sealed", lora_sha256=lora_sha, images=len(hashes))

    def _teardown(self, clear_marker: bool) -> None:
        errors: list[SecureTrainerError] = []
        tmp = self._ws.tmp_dir / self.run_id
        if self._fs.is_mounted(self._s.mountpoint):
            report = wipe([tmp])
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                self._audit("teardown", wiped_files=report.files, wiped_bytes=report.bytes)
            except SecureTrainerError as err:
                errors.append(err)
        try:
            self._ws.close()
        except SecureTrainerError as err:
            errors.append(err)
        try:
            self._vault.stop_renewal()
            self._vault.revoke_self()
        except SecureTrainerError as err:
            errors.append(err)
        if clear_marker and not errors:
            clear_run_marker(self._s.state_dir)
        if errors and sys.exc_info()[0] is None:
            raise errors[0]
