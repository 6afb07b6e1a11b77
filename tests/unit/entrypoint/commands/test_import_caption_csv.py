"""`data import --caption-csv` (lora-scripts' metadata.csv) through the real CLI and decoder:
captions pass the PII scan, file names are pseudonymised, bad CSVs end in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from entrypoint.cli import main

SECRETS = ("Jane_Doe_001", "beach_party", "Bob", "jane.doe@example.com", "lonely")


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    """A lora-scripts style flat folder: images plus metadata.csv, no sidecars."""
    root = tmp_path / "src"
    root.mkdir()
    for i, stem in enumerate(("Jane_Doe_001", "beach_party", "lonely")):
        Image.new("RGB", (24, 16), (i * 40, 10, 200)).save(root / f"{stem}.png")
    (root / "metadata.csv").write_text(
        "file_name,caption\n"
        "Jane_Doe_001.png,\"portrait, jane.doe@example.com\"\n"
        "./beach_party.png,Bob on a boat\n"
        "gone.png,no such image\n", encoding="utf-8")
    return root


def _import(src: Path, ws: Path, *extra: str) -> list[str]:
    ws.mkdir(exist_ok=True)
    return ["data", "import", str(src), "--workspace", str(ws), "--name", "ls",
            "--unsafe-plaintext-dest", "--json", "--caption-csv", str(src / "metadata.csv"),
            *extra]


def test_csv_captions_are_scanned_and_names_pseudonymised(
        flat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    assert main(_import(flat, ws)) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["images_written"] == 3 and summary["captions_written"] == 2
    assert summary["pii_findings"] == {"EMAIL": 1}
    assert summary["rejected"] == {"caption_csv_missing_file": 1}
    dest = ws / "datasets" / "ls"
    subset = dest / "1_images"  # flat folder → one Kohya subset
    images = sorted(subset.glob("*.png"))
    captions = sorted(subset.glob("*.txt"))
    assert len(images) == 3 and len(captions) == 2
    texts = {p.read_text(encoding="utf-8") for p in captions}
    assert "Bob on a boat" in texts and not any("jane.doe@example.com" in t for t in texts)
    assert all(p.with_suffix(".png").is_file() for p in captions)
    # No source name anywhere in the dataset's file names, nor on the terminal; CSV not copied.
    written = [p.relative_to(dest).as_posix() for p in dest.rglob("*")]
    for secret in SECRETS:
        assert not any(secret in w for w in written), secret
        assert secret not in out and secret not in err
    assert not any(w.endswith(".csv") for w in written)
    assert main(_import(flat, tmp_path / "ws2", "--fail-on-reject")) == 8


def test_pii_reject_mode_applies_to_csv_captions(flat: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_import(flat, tmp_path / "ws", "--pii", "reject")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images_written"] == 2
    assert summary["rejected"] == {"caption_csv_missing_file": 1, "caption_pii": 1}


@pytest.mark.parametrize(("rows", "words"), [
    ("../outside.png,escape\n", "outside the image folder"),
    ("/etc/hostname,absolute\n", "outside the image folder"),
    ("sub/../../x.png,dots\n", "outside the image folder"),
    ("C:/x.png,drive\n", "outside the image folder"),
    ("lonely.png,a\nlonely.png,b\nbeach_party.png,c\n./beach_party.png,d\n", "2 file name(s)"),
    ("lonely.png\n", "too few columns"),
])
def test_bad_csv_ends_the_import_before_anything_is_written(
        flat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: str,
        words: str) -> None:
    (flat / "metadata.csv").write_text(rows, encoding="utf-8")
    ws = tmp_path / "ws"
    assert main(_import(flat, ws)) == 8
    out, err = capsys.readouterr()
    lines = [x for x in err.strip().splitlines() if not x.startswith("warning: ")]
    assert out == "" and len(lines) == 1 and words in lines[0] and lines[0].startswith("error[")
    assert str(tmp_path) not in err and "lonely" not in err and "outside.png" not in err
    assert not (ws / "datasets").exists()


def test_a_symlinked_csv_is_refused(flat: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    real = tmp_path / "elsewhere.csv"
    os.replace(flat / "metadata.csv", real)
    (flat / "metadata.csv").symlink_to(real)
    assert main(_import(flat, tmp_path / "ws")) == 8
    assert "could not be read" in capsys.readouterr().err
