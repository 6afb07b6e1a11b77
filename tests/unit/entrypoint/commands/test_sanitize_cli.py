"""`secure-trainer data import|sanitize|scan` through the real CLI: counts only, exit codes."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from entrypoint.cli import main
from entrypoint.commands.data_cmd import gocryptfs_mount_of
from tests.conftest import REPO_ROOT
from tests.unit.secure_trainer.privacy.test_sanitize_samples import (
    make_full_jpeg,
    make_truncated_jpeg,
)

REPO = REPO_ROOT
SECRET_NAMES = ("Jane", "IMG_0001", "holiday", "jane.doe")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    sub = root / "10_Jane Doe"
    sub.mkdir(parents=True)
    make_full_jpeg(sub / "IMG_0001.jpg")
    (sub / "IMG_0001.txt").write_text("Jane at the beach, jane.doe@example.com")
    Image.new("RGB", (16, 16), (1, 2, 3)).save(sub / "holiday.png")
    make_truncated_jpeg(sub / "broken.jpg")
    (root / "subjects.csv").write_text("path,subject\n10_Jane Doe/IMG_0001.jpg,subj-001\n")
    return root


def _cli(args: list[str], capsys: pytest.CaptureFixture[str],
         stdin: bytes | None = None, monkeypatch: pytest.MonkeyPatch | None = None
         ) -> tuple[int, str, str]:
    if stdin is not None and monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_import_into_plaintext_dir_needs_unsafe_flag(src: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A workspace that is not a gocryptfs mount is refused with exit 8 and nothing written."""
    ws = tmp_path / "ws"
    ws.mkdir()
    code, _, err = _cli(["data", "import", str(src), "--workspace", str(ws)], capsys)
    assert code == 8 and "gocryptfs" in err
    assert list(ws.iterdir()) == []


def test_import_counts_only_and_records_subjects(src: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Import prints counts (no names), writes the dataset and records the subject."""
    ws = tmp_path / "ws"
    ws.mkdir()
    args = ["data", "import", str(src), "--workspace", str(ws), "--name", "people",
            "--unsafe-plaintext-dest", "--json"]
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["images_written"] == 2 and summary["rejected"] == {"truncated": 1}
    assert summary["subjects_recorded"] == 1 and summary["pii_findings"] == {"EMAIL": 1}
    for name in (*SECRET_NAMES, str(src)):
        assert name not in out and name not in err
    with sqlite3.connect(ws / "registry.sqlite") as db:
        rows = db.execute("SELECT subject, dataset FROM images ORDER BY subject").fetchall()
    assert rows == [(None, "people"), ("subj-001", "people")]
    assert (ws / ".secure-trainer" / "pseudonym.key").stat().st_mode & 0o777 == 0o600
    # Idempotent: same pseudonyms, nothing duplicated.
    files_before = sorted(p.name for p in (ws / "datasets").rglob("*"))
    code, out, _ = _cli(args, capsys)
    assert code == 0 and json.loads(out)["images_unchanged"] == 2
    assert sorted(p.name for p in (ws / "datasets").rglob("*")) == files_before


def test_import_key_from_stdin(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """--pseudonym-key-stdin: the key never lands in the workspace; same key → same names."""
    names = []
    for run in ("a", "b"):
        ws = tmp_path / f"ws{run}"
        ws.mkdir()
        code, _, err = _cli(["data", "import", str(src), "--workspace", str(ws), "--name", "d",
                             "--unsafe-plaintext-dest", "--pseudonym-key-stdin"], capsys,
                            stdin=b"0123456789abcdef0123456789abcdef\n", monkeypatch=monkeypatch)
        assert code == 0, err
        assert not (ws / ".secure-trainer").exists()
        names.append(sorted(p.relative_to(ws).as_posix() for p in ws.rglob("*.png")))
    assert names[0] == names[1] and len(names[0]) == 2


def test_sanitize_and_scan(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`data sanitize` writes a clean tree; `data scan` counts metadata before, none after."""
    code, out, _ = _cli(["data", "scan", str(src), "--json"], capsys)
    before = json.loads(out)
    assert code == 0 and before["images_with_metadata"]["gps"] == 1
    assert before["captions_with_pii"] == {"EMAIL": 1}
    dst = tmp_path / "clean"
    code, _, err = _cli(["data", "sanitize", str(src), str(dst), "--unsafe-plaintext-dest",
                         "--format", "webp", "--resolution", "8", "--pii", "redact"], capsys)
    assert code == 0, err
    assert (dst / ".pseudonyms.json").stat().st_mode & 0o777 == 0o600
    code, out, _ = _cli(["data", "scan", str(dst), "--json"], capsys)
    after = json.loads(out)
    assert after["images"] == 2 and after["images_with_metadata"] == {}
    assert after["captions_with_pii"] == {}
    for name in SECRET_NAMES:
        assert name not in out


def test_bad_flags_are_config_errors(src: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown --pii / --format / --resolution values exit 2."""
    for extra in (["--pii", "shred"], ["--format", "gif"], ["--resolution", "big"]):
        code, _, _ = _cli(["data", "sanitize", str(src), str(tmp_path / "d"),
                           "--unsafe-plaintext-dest", *extra], capsys)
        assert code == 2, extra


def test_all_rejected_is_exit_8_as_subprocess(tmp_path: Path) -> None:
    """A source where nothing can be imported exits 8 (real process, real console script)."""
    sub = tmp_path / "src" / "1_x"
    sub.mkdir(parents=True)
    (sub / "noise.png").write_bytes(b"not an image at all")
    ws = tmp_path / "ws"
    ws.mkdir()
    proc = subprocess.run([sys.executable, "-m", "entrypoint.cli", "data", "import",
                           str(tmp_path / "src"), "--workspace", str(ws),
                           "--unsafe-plaintext-dest"], capture_output=True, text=True,
                          timeout=120, cwd=REPO, check=False)
    assert proc.returncode == 8
    assert "corrupt=1" in proc.stdout and "noise" not in proc.stdout + proc.stderr


def test_mountinfo_parser(tmp_path: Path) -> None:
    """The deepest mount decides; octal escapes in mount points are decoded."""
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / / rw - ext4 /dev/root rw\n"
        "40 22 0:40 / /mnt/my\\040ws rw,nosuid - fuse.gocryptfs /c rw\n"
        "41 40 0:41 / /mnt/my\\040ws/inner rw - tmpfs tmpfs rw\n")
    assert gocryptfs_mount_of(Path("/mnt/my ws/datasets"), info)
    assert not gocryptfs_mount_of(Path("/mnt/my ws/inner/x"), info)
    assert not gocryptfs_mount_of(Path("/home"), info)


def test_import_dicom_and_region_flags_are_config_errors(src: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """Bad --window / --dicom-bits / --dicom-dates / --dicom-caption / --pii-region exit 2
    before anything is written."""
    ws = tmp_path / "ws"
    ws.mkdir()
    for extra in (["--window", "40"], ["--window", "40,0"], ["--dicom-bits", "12"],
                  ["--dicom-dates", "keep"], ["--dicom-caption", "PatientName"],
                  ["--dicom-caption", "NoSuchAttribute"], ["--pii-region", "XQ"]):
        code, _, _ = _cli(["data", "import", str(src), "--workspace", str(ws),
                           "--unsafe-plaintext-dest", *extra], capsys)
        assert code == 2, extra
    assert list(ws.iterdir()) == []
