"""Real auditctl: our rendered rules load and are removed exactly; other rules survive."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from entrypoint.audit.auditctl import (
    Auditctl,
    AuditMode,
    AuditPaths,
    AuditRule,
    default_rules_file,
    render_rules,
)
from entrypoint.errors import AuditError, ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.root]


def _paths(tmp_path: Path) -> AuditPaths:
    for name in ("mnt", "cipher"):
        (tmp_path / name).mkdir()
    (tmp_path / "cipher" / "gocryptfs.conf").write_text("{}")
    token = tmp_path / "token"
    token.write_text("x")
    return AuditPaths(workspace=tmp_path / "mnt", cipher_dir=tmp_path / "cipher",
                      trainer_uid=10001, binary=Path(sys.executable),
                      vault_files=(token, tmp_path / "missing-secret-id"))


def test_render_uses_real_paths_and_skips_missing(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    rules = render_rules(default_rules_file().read_text(), paths)
    lines = [" ".join(r.args) for r in rules]
    assert f"-w {tmp_path / 'mnt'} -p wa -k secure-trainer" in lines
    assert f"-w {tmp_path / 'token'} -p rwa -k secure-trainer" in lines
    assert "-a always,exit -F arch=b64 -S execve -F uid=10001 -k secure-trainer" in lines
    assert not any("missing-secret-id" in ln or "${" in ln for ln in lines)
    assert all(r.args[-2:] == ("-k", "secure-trainer") for r in rules)
    with pytest.raises(AuditError):
        render_rules("-w /etc/shadow -p r -k other\n", paths)
    with pytest.raises(ConfigError):
        AuditMode.parse("loud")
    assert AuditMode.parse("Kernel") is AuditMode.KERNEL


def test_load_and_remove_leaves_unrelated_rules(tmp_path: Path) -> None:
    ctl = Auditctl()
    unrelated_dir = tmp_path / "unrelated"
    unrelated_dir.mkdir()
    unrelated = AuditRule(("-w", str(unrelated_dir), "-p", "wa", "-k", "st-test-unrelated"))
    other = Auditctl(key="st-test-unrelated")
    pre = other.load([unrelated])
    rules = render_rules(default_rules_file().read_text(), _paths(tmp_path))
    loaded = None
    try:
        loaded = ctl.load(rules)
        ours = ctl.ours()
        assert len(loaded.rules) == len(rules) >= 6
        assert any(str(tmp_path / "mnt") in r for r in ours)
        assert any("uid=10001" in r and "key=secure-trainer" in r for r in ours)
        assert ctl.remove(loaded) == len(rules)
        listing = ctl.list_rules()
        assert not any(str(tmp_path) in r and "secure-trainer" in r for r in listing)
        assert f"-w {unrelated_dir} -p wa -k st-test-unrelated" in listing
    finally:
        if loaded is not None and loaded.rules:
            ctl.remove(loaded)
        other.remove(pre)
    assert not any(str(tmp_path) in r for r in ctl.list_rules())


def test_failed_load_rolls_back(tmp_path: Path) -> None:
    ctl = Auditctl()
    good = AuditRule(("-w", str(tmp_path), "-p", "wa", "-k", "secure-trainer"))
    bad = AuditRule(("-w", str(tmp_path / "no-parent" / "x"), "-p", "wa", "-k", "secure-trainer"))
    with pytest.raises(AuditError) as err:
        ctl.load([good, bad])
    assert err.value.exit_code == 6 and str(tmp_path) not in err.value.message
    assert not any(str(tmp_path) in r for r in ctl.list_rules())


def test_host_mode_report_and_status() -> None:
    report = Auditctl().host_report()
    assert report.visible and report.our_rules is not None
    missing = Auditctl(binary="/nonexistent/auditctl").host_report()
    assert not missing.visible and missing.our_rules is None
    assert Auditctl().enabled() in (True, False)
