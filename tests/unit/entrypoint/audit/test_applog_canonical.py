"""`verify` accepts a line only when it is byte for byte the canonical serialisation of its record.

A duplicated key placed before the real one, reordered keys or other whitespace would keep the
HMAC valid (it covers the parsed record) while a first-wins parser downstream reads another
value; each must fail verify, and `audit verify` must exit 6.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from entrypoint.audit.applog import AppAuditLog, parse_record, verify
from entrypoint.cli import main
from entrypoint.secret import Secret

KEY = "cd" * 32


def _log(tmp_path: Path) -> Path:
    path = tmp_path / "app.jsonl"
    log = AppAuditLog(path, Secret(KEY))
    for i in range(3):
        log.append("phase", n=i, outcome="allow")
    return path


def _replace_line(path: Path, index: int, line: str) -> None:
    lines = path.read_text().splitlines()
    lines[index] = line
    path.write_text("".join(ln + "\n" for ln in lines))


def _cli_verify(path: Path, capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(KEY.encode() + b"\n")))
    code = main(["audit", "verify", str(path), "--key-stdin"])
    out, err = capsys.readouterr()
    return code, out + err


def test_duplicate_key_before_the_real_one_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = _log(tmp_path)
    line = path.read_text().splitlines()[1]
    # A first-wins reader sees outcome=deny; a last-wins parser (and the HMAC) sees allow.
    forged = line.replace('"fields":{', '"fields":{"outcome":"deny",', 1)
    assert json.loads(forged)["fields"]["outcome"] == "allow"  # invisible to a plain parse
    _replace_line(path, 1, forged)
    result = verify(path, Secret(KEY))
    assert not result.ok and result.first_bad_seq == 2 and "twice" in result.reason
    code, out = _cli_verify(path, capsys, monkeypatch)
    assert code == 6 and "broken at record 2" in out


def test_duplicate_top_level_key_fails(tmp_path: Path) -> None:
    path = _log(tmp_path)
    line = path.read_text().splitlines()[2]
    _replace_line(path, 2, '{"event":"forged",' + line[1:])
    result = verify(path, Secret(KEY))
    assert not result.ok and result.first_bad_seq == 3


@pytest.mark.parametrize("variant", ["reordered", "spaced", "unicode_escape", "trailing_ws"])
def test_non_canonical_variants_of_a_valid_record_fail(tmp_path: Path, variant: str) -> None:
    path = _log(tmp_path)
    line = path.read_text().splitlines()[0]
    record = json.loads(line)
    if variant == "reordered":
        forged = json.dumps(dict(reversed(list(record.items()))), separators=(",", ":"))
    elif variant == "spaced":
        forged = json.dumps(record, sort_keys=True)
    elif variant == "unicode_escape":
        forged = line.replace('"phase"', '"\\u0070hase"', 1)
    else:
        forged = line + " "
    assert json.loads(forged) == record  # same parsed record, so the HMAC alone still holds
    _replace_line(path, 0, forged)
    result = verify(path, Secret(KEY))
    assert not result.ok and result.first_bad_seq == 1 and "canonical" in result.reason


def test_parse_record_round_trips_canonical_lines(tmp_path: Path) -> None:
    path = _log(tmp_path)
    for raw in path.read_bytes().split(b"\n")[:-1]:
        assert parse_record(raw)["event"] == "phase"
    result = verify(path, Secret(KEY))
    assert result.ok and result.records == 3 and result.head != "0" * 64


def test_writer_refuses_to_extend_a_non_canonical_log(tmp_path: Path) -> None:
    from entrypoint.errors import AuditError

    path = _log(tmp_path)
    line = path.read_text().splitlines()[2]
    _replace_line(path, 2, json.dumps(json.loads(line), sort_keys=True))
    with pytest.raises(AuditError):
        AppAuditLog(path, Secret(KEY))
