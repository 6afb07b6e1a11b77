"""Typed errors of the trainer and data libraries; each carries the process exit code.

Messages must be safe to print: never a secret, data path, file name or caption.
"""

from __future__ import annotations


class SecureTrainerError(Exception):
    """Root of every expected failure. `exit_code` maps it to the CLI contract."""

    exit_code: int = 1
    kind: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(SecureTrainerError):
    """Bad usage, flag, TOML key or value (exit 2)."""

    exit_code = 2
    kind = "config"


class TrainingError(SecureTrainerError):
    """Training failed after it started (exit 7)."""

    exit_code = 7
    kind = "training"


class DataRejected(SecureTrainerError):
    """Input data or a model file was refused (pickle, corrupt, empty dataset) (exit 8)."""

    exit_code = 8
    kind = "data"
