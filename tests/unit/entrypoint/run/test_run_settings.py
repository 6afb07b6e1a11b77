"""RunSettings.from_env: ST_AUDIT_MODE (the variable `policy check` reads too)."""

from __future__ import annotations

import pytest

from entrypoint.audit.auditctl import AuditMode
from entrypoint.errors import ConfigError
from entrypoint.run.lifecycle import RunSettings

_BASE = {"ST_CIPHER_DIR": "/srv/c", "ST_MOUNTPOINT": "/srv/m", "ST_TRAIN_UID": "none"}


def test_audit_mode_defaults_to_app_and_parses() -> None:
    assert RunSettings.from_env(dict(_BASE), policy="dev", train_args=[]).audit_mode \
        is AuditMode.APP
    for value, mode in (("kernel", AuditMode.KERNEL), ("Host", AuditMode.HOST)):
        settings = RunSettings.from_env({**_BASE, "ST_AUDIT_MODE": value}, policy="dev",
                                        train_args=[])
        assert settings.audit_mode is mode


def test_unknown_audit_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        RunSettings.from_env({**_BASE, "ST_AUDIT_MODE": "loud"}, policy="dev", train_args=[])
    assert err.value.exit_code == 2 and "kernel, host, app" in err.value.message
