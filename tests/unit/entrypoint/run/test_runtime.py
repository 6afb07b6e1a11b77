"""ST_TRAINER_PYTHON: parsed once into RunSettings; the default launcher uses it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.run.lifecycle import RunSettings
from entrypoint.run.runtime import runtime_problem, trainer_python
from entrypoint.run.trainer_child import trainer_argv

_BASE = {"ST_CIPHER_DIR": "/srv/c", "ST_MOUNTPOINT": "/srv/m", "ST_TRAIN_UID": "none"}


def test_default_is_the_supervisors_interpreter_and_a_set_path_is_kept() -> None:
    assert trainer_python({}) == Path(sys.executable)
    assert trainer_python({"ST_TRAINER_PYTHON": " "}) == Path(sys.executable)
    settings = RunSettings.from_env({**_BASE, "ST_TRAINER_PYTHON": "/opt/rt/bin/python"},
                                    policy="dev", train_args=[])
    assert settings.trainer_python == Path("/opt/rt/bin/python")
    assert trainer_argv(["--seed", "1"], "train", settings.trainer_python)[:2] == \
        ["/opt/rt/bin/python", "-I"]


def test_relative_path_is_a_config_error() -> None:
    """Relative would resolve in the child's cwd: the workspace, which the trainer writes."""
    with pytest.raises(ConfigError) as err:
        RunSettings.from_env({**_BASE, "ST_TRAINER_PYTHON": "bin/python"}, policy="dev",
                             train_args=[])
    assert err.value.exit_code == 2


def test_missing_or_relative_interpreter_has_a_problem() -> None:
    assert runtime_problem(Path("/nonexistent/bin/python"), 10001) == "cannot be inspected"
    assert runtime_problem(Path("bin/python"), 10001) == "is not an absolute path"
