"""Typed errors of the secure envelope, mapped to the exit codes of DESIGN.md.

coupling: exit codes are the CLI contract (DESIGN.md "Exit codes"); tests assert them.
"""

from __future__ import annotations

from secure_trainer.errors import ConfigError, DataRejected, SecureTrainerError, TrainingError

__all__ = [
    "SecureTrainerError", "ConfigError", "PolicyDenied", "VaultError", "VaultAuthError",
    "VaultUnreachable", "VaultSealed", "SecretMissing", "WorkspaceError", "AuditError",
    "TrainingError", "DataRejected", "Interrupted", "EXIT_CODES",
]


class PolicyDenied(SecureTrainerError):
    """A deny rule of the active policy failed (exit 3)."""

    exit_code = 3
    kind = "policy"


class VaultError(SecureTrainerError):
    """Any Vault/key failure (exit 4)."""

    exit_code = 4
    kind = "vault"


class VaultAuthError(VaultError):
    """Login failed, token expired or permission denied."""


class VaultUnreachable(VaultError):
    """Vault could not be reached (network, TLS)."""


class VaultSealed(VaultError):
    """Vault answered but is sealed."""


class SecretMissing(VaultError):
    """The expected KV v2 secret or version is absent."""


class WorkspaceError(SecureTrainerError):
    """The encrypted workspace could not be created, opened or closed (exit 5)."""

    exit_code = 5
    kind = "workspace"


class AuditError(SecureTrainerError):
    """Audit rules or the app audit log failed (exit 6)."""

    exit_code = 6
    kind = "audit"


class Interrupted(SecureTrainerError):
    """SIGINT/SIGTERM turned into an exception so teardown runs (exit 128+signum)."""

    kind = "signal"

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
        self.exit_code = 128 + signum


EXIT_CODES: dict[type[SecureTrainerError], int] = {
    ConfigError: 2,
    PolicyDenied: 3,
    VaultError: 4,
    WorkspaceError: 5,
    AuditError: 6,
    TrainingError: 7,
    DataRejected: 8,
}
