"""`data import` of pydicom's real DICOM samples through the CLI: decoded in the forked child
dropped to a training uid, de-identified PNG frames in the workspace, keyed subjects in the
registry, `registry erase --subject` removes exactly that patient's images; and the isolated
decoder gives the same frames and report as the in-process one.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from entrypoint.cli import main
from entrypoint.decode.isolated import IsolatedDecoder
from secure_trainer.privacy.decode_any import decode_any
from secure_trainer.privacy.sanitize import SanitizeOptions
from tests.unit.secure_trainer.privacy.dicom.samples import (
    FRAMES,
    NO_HANDLER,
    identifying_strings,
    path,
    read,
)

pytestmark = [pytest.mark.integration, pytest.mark.root]
TRAIN_IDS = (10088, 10088)  # a uid of its own (see test_decode_child.py)
AUDIT_KEY = b"audit-key-for-tests-0123456789abcdef"
SOURCES = ("CT_small.dcm", "MR_small.dcm", "SC_rgb_rle_2frame.dcm")


def _cli(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
         stdin: bytes = b"") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_isolated_child_matches_in_process() -> None:
    """Same frames and DICOM report from the dropped child as in this process."""
    request = SanitizeOptions().decode_request()
    with IsolatedDecoder(TRAIN_IDS) as dec:
        dec.start(request)
        for name in ("rtdose.dcm", "SC_rgb_rle_2frame.dcm"):
            raw = path(name).read_bytes()
            here, there = decode_any(raw, request), dec(raw, request)
            assert (there.data, *there.frames) == (here.data, *here.frames)
            assert len(there.frames) + 1 == FRAMES[name] and there.dicom == here.dicom


def test_import_erase_by_patient(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Import (child decoder) → registry subjects per patient → erase one patient."""
    src, ws = tmp_path / "src", tmp_path / "ws"
    (src / "1_ct").mkdir(parents=True)
    for name in (*SOURCES, NO_HANDLER):
        shutil.copyfile(path(name), src / "1_ct" / name)
    ws.mkdir()
    monkeypatch.setenv("ST_MOUNTPOINT", str(ws))
    monkeypatch.setenv("ST_TRAIN_UID", str(TRAIN_IDS[0]))
    code, out, err = _cli(["data", "import", str(src), "--name", "ct", "--unsafe-plaintext-dest",
                           "--json", "--window", "40,400"], capsys, monkeypatch)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["images_written"] == 4 and summary["subjects_recorded"] == 4
    assert summary["rejected"] == {"unsupported_transfer_syntax": 1}
    secrets_ = set().union(*(identifying_strings(read(n)) for n in SOURCES))
    for p in (ws / "datasets").rglob("*"):
        if p.is_file():
            assert not any(s.encode() in p.read_bytes() for s in secrets_)
    assert not any(s in out or s in err for s in secrets_)

    code, subject, _ = _cli(["data", "dicom-subject", "--unsafe-plaintext-dest"], capsys,
                            monkeypatch, stdin=b"1CT1\n")
    subject = subject.strip()
    assert code == 0 and subject.startswith("dicom-") and "1CT1" not in subject
    with sqlite3.connect(ws / "registry.sqlite") as db:
        rows = db.execute("SELECT subject FROM images").fetchall()
    assert sorted(r[0] == subject for r in rows) == [False, False, False, True]

    code, out, err = _cli(["data", "import", str(src), "--name", "ct", "--unsafe-plaintext-dest",
                           "--fail-on-reject"], capsys, monkeypatch)
    assert code == 8  # the JPEG-LS file is still refused

    code, _, err = _cli(["registry", "erase", "--subject", subject, "--yes",
                         "--audit-key-stdin", "--unsafe-plaintext-dest"], capsys, monkeypatch,
                        stdin=AUDIT_KEY)
    assert code == 0, err
    assert len(list((ws / "datasets" / "ct").rglob("*.png"))) == 3
    with sqlite3.connect(ws / "registry.sqlite") as db:
        left = {r[0] for r in db.execute("SELECT subject FROM images").fetchall()}
    assert subject not in left and len(left) == 2
