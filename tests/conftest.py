"""Session fixtures shared by every test layer: the tiny model, the synthetic dataset, a dev OpenBao.

All of them are real: the model is a random-weight SD1.x architecture built locally, the
dataset real image files, the Vault a real `bao server -dev` on loopback stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# `keys` and `run` journal pre-mount events in ST_STATE_DIR (default /run/secure-trainer): give the
# session its own, so tests that do not set it never see another test's (or a real site's) journal.
os.environ.setdefault("ST_STATE_DIR", tempfile.mkdtemp(prefix="st-test-state-"))

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny random SD1.x model as a diffusers folder and a single-file LDM safetensors."""
    from secure_trainer.devtools.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic Kohya dataset folder (`10_subject`, `5_style`); returns train_data_dir."""
    from secure_trainer.devtools.synthetic_dataset import make_dataset

    return make_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="session")
def dev_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real OpenBao dev server on 127.0.0.1 and a free port; stopped by PID at the end."""
    from entrypoint.vault.devserver import DevVault

    vault = DevVault.start(workdir=tmp_path_factory.mktemp("bao"))
    try:
        yield vault
    finally:
        vault.stop()


@pytest.fixture
def root_safe_dir() -> Iterator[Path]:
    """A root-owned 0755 directory on a root-owned, unwritable chain (/run, not /tmp): where a
    test puts files that the trainer-runtime and allocator checks must accept."""
    path = Path(tempfile.mkdtemp(prefix="st-safe-", dir="/run"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)
