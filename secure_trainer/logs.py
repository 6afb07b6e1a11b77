"""Quiet, redaction-safe logging for training runs and the environment hardening that goes with it.

Our package logger gets one handler with a fixed format (level + logger name + message, no
`%(pathname)s`, no arguments dumped); the ML libraries are capped at WARNING/ERROR and their
progress bars are turned off, because their bars and info lines print file names, repo ids and
download URLs. `harden_env` makes the Hugging Face stack offline and telemetry-free.
Never logs a data path, file name, caption or secret itself, and never reads the network.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, MutableMapping

PACKAGE_LOGGER = "secure_trainer"
# Third-party loggers that print model/repo/file names at INFO; capped, never raised.
_NOISY_LOGGERS: Mapping[str, int] = {
    "diffusers": logging.ERROR,
    "transformers": logging.ERROR,
    "accelerate": logging.WARNING,
    "huggingface_hub": logging.ERROR,
    "torch": logging.WARNING,
    "torch.distributed": logging.WARNING,
    "peft": logging.WARNING,
    "PIL": logging.WARNING,
    "tensorboard": logging.WARNING,
    "urllib3": logging.WARNING,
    "safetensors": logging.WARNING,
}

# SECURITY: every variable keeps the Hugging Face / torch stack from calling out or printing bars.
HARDENED_ENV: Mapping[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_SYMLINKS_WARNING": "1",
    "DISABLE_TELEMETRY": "1",
    "DIFFUSERS_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
    "WANDB_MODE": "disabled",
}

_FORMAT = "%(levelname)s %(name)s: %(message)s"


def harden_env(env: MutableMapping[str, str] | None = None) -> None:
    """Set the offline/no-telemetry/no-progress-bar variables in `env` (default `os.environ`).

    Overrides existing values: an inherited `HF_HUB_OFFLINE=0` must not re-enable the network.
    Call before importing diffusers/transformers where possible (some read env at import).
    Raises nothing.
    """
    target = os.environ if env is None else env
    for key, value in HARDENED_ENV.items():
        target[key] = value


def _level_of(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        from secure_trainer.errors import ConfigError

        raise ConfigError("log level must be one of DEBUG, INFO, WARNING, ERROR")
    return value


def configure_quiet_logging(level: str | int = "WARNING") -> logging.Logger:
    """Set up our package logger at `level` and silence the ML libraries; return our logger.

    Idempotent: calling it twice does not add a second handler. Third-party loggers are capped
    at WARNING or ERROR whatever `level` is (DEBUG for us must not turn on diffusers' INFO lines,
    which name files). Raises ConfigError for an unknown level name.
    """
    numeric = _level_of(level)
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.setLevel(numeric)
    if not any(getattr(h, "_secure_trainer", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._secure_trainer = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
    for name, cap in _NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(max(cap, numeric))
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    _quiet_hf_libraries()
    # Library FutureWarnings/UserWarnings can quote file names and model ids; our own
    # warnings go through the logger instead.
    if numeric > logging.DEBUG:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    return logger


def _quiet_hf_libraries() -> None:
    # Imported lazily: configuring logs must not cost the diffusers import when unused.
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    disable_progress_bars()


def get_logger(name: str) -> logging.Logger:
    """Child logger of the package logger (`secure_trainer.<name>`)."""
    return logging.getLogger(f"{PACKAGE_LOGGER}.{name}")
