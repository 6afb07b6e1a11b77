"""`RunSettings`: what one `secure-trainer run` needs, read from flags and the environment once.

Moved out of entrypoint/run/lifecycle.py (which re-exports it). Never reads a secret: Vault
credentials stay file paths, checked by the Vault client.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from entrypoint.audit.auditctl import AuditMode
from entrypoint.errors import ConfigError
from entrypoint.run.runtime import trainer_python
from entrypoint.run.seal import retention_from_env

__all__ = ["TRAINERS", "RunSettings"]

TRAINERS = ("kohya", "llm")


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
    retention_days: int | None = None
    """ST_RETENTION_DAYS: the run's outputs expire after this many days (strict requires it)."""
    extra_env: dict[str, str] = field(default_factory=dict)
    audit_mode: AuditMode = AuditMode.APP
    vault_files: tuple[Path, ...] = ()
    """Vault credential files (token, role_id, secret_id, JWT) the kernel rules watch."""
    canary: str | None = None
    """ST_POLICY_CANARY: an IP:PORT that must stay unreachable (egress proof for the policy)."""
    log_level: str = "warning"
    """ST_LOG_LEVEL: the log level the policy judges (the same variable `policy check` reads)."""
    trainer: str = "kohya"
    """`kohya` (`train`, image LoRA) or `llm` (`train-llm`: CONFIG.yaml, then --key value)."""
    trainer_python: Path = field(default_factory=lambda: Path(sys.executable))
    """ST_TRAINER_PYTHON: the child's interpreter; checked (root-owned, reachable) before a
    dropped child starts (`entrypoint/run/runtime.py`)."""

    @classmethod
    def from_env(cls, env: dict[str, str], *, policy: str, train_args: list[str],
                 vault_files: tuple[Path, ...] = (), trainer: str = "kohya") -> RunSettings:
        """Read ST_CIPHER_DIR, ST_MOUNTPOINT, ST_STATE_DIR, ST_TRAIN_UID/GID, ST_TRAINER_PYTHON,
        ST_AUDIT_MODE (kernel|host|app, default app; the same variable `policy check` reads).

        Raises ConfigError.
        """
        try:
            cipher, mnt = Path(env["ST_CIPHER_DIR"]), Path(env["ST_MOUNTPOINT"])
        except KeyError:
            raise ConfigError("set ST_CIPHER_DIR and ST_MOUNTPOINT (the encrypted workspace)") from None
        if trainer not in TRAINERS:
            raise ConfigError("--trainer must be kohya or llm")
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
                   train_ids=ids, audit_mode=AuditMode.parse(env.get("ST_AUDIT_MODE", "app")),
                   vault_files=vault_files, canary=env.get("ST_POLICY_CANARY") or None,
                   log_level=env.get("ST_LOG_LEVEL", "warning"),
                   owner=env.get("ST_OWNER", "unspecified"),
                   purpose=env.get("ST_PURPOSE", "unspecified"),
                   legal_basis=env.get("ST_LEGAL_BASIS", "unspecified"),
                   retention_days=retention_from_env(env), trainer=trainer,
                   trainer_python=trainer_python(env))

