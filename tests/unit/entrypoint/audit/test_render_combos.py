"""render_rules: a line with several placeholders gives one rule per combination of values."""

from __future__ import annotations

from pathlib import Path

from entrypoint.audit.auditctl import AuditPaths, render_rules


def test_two_placeholders_combine_and_a_missing_value_drops_the_line(tmp_path: Path) -> None:
    creds = [tmp_path / "role_id", tmp_path / "secret_id"]
    for c in creds:
        c.write_text("x")
    paths = AuditPaths(workspace=tmp_path, cipher_dir=tmp_path, trainer_uid=10042,
                       vault_files=tuple(creds))
    template = ("-a always,exit -S openat -F dir=${workspace} -F uid=${uid} -k secure-trainer\n"
                "-w ${vault_file} -p r -F uid=${uid} -k secure-trainer\n"
                "-w ${binary} -p x -F uid=${uid} -k secure-trainer\n")
    rules = [" ".join(r.args) for r in render_rules(template, paths)]
    assert rules == [
        f"-a always,exit -S openat -F dir={tmp_path} -F uid=10042 -k secure-trainer",
        f"-w {creds[0]} -p r -F uid=10042 -k secure-trainer",
        f"-w {creds[1]} -p r -F uid=10042 -k secure-trainer",
    ]  # no binary given: its line is dropped
