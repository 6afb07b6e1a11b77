"""`data import-text` in-process: the sanitized corpus lands in the workspace, counts only are
printed, and train-llm reads the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secure_trainer.devtools.synthetic_text import make_text_dataset

pytestmark = [pytest.mark.integration]


def test_import_text_writes_sanitized_jsonl(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from entrypoint.cli import main
    from secure_trainer.llm.data import read_jsonl

    summary = make_text_dataset(tmp_path / "src", subjects=5, per_subject=4)
    ws = tmp_path / "ws"
    ws.mkdir()
    code = main(["data", "import-text", str(tmp_path / "src" / "chat.jsonl"), "--workspace",
                 str(ws), "--unsafe-plaintext-dest", "--name", "notes", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    counts = json.loads(captured.out)
    assert counts["records_kept"] == summary.records - summary.duplicates
    assert counts["rejected"] == {"duplicate": summary.duplicates}
    assert counts["records_redacted"] == summary.with_pii and counts["subjects"] == 5
    out = ws / "datasets" / "notes" / "train.jsonl"
    text = out.read_text()
    assert "@example.org" not in text and "GB82" not in text and "<EMAIL>" in text
    assert "example.org" not in captured.out + captured.err
    assert str(tmp_path) not in captured.out + captured.err
    saved = json.loads((out.parent / "import-report.json").read_text())
    assert saved == {**counts, "pii_mode": "redact"}
    records = read_jsonl(out)
    assert len(records) == counts["records_kept"] and records[0].subject == "subj-000"

    code = main(["data", "import-text", str(tmp_path / "src" / "chat.jsonl"), "--workspace",
                 str(ws), "--unsafe-plaintext-dest", "--pii", "reject", "--fail-on-reject"])
    assert code == 8 and "rejected" in capsys.readouterr().err
    code = main(["data", "import-text", str(tmp_path / "src" / "chat.jsonl"), "--workspace",
                 str(ws)])
    assert code == 8 and "gocryptfs" in capsys.readouterr().err  # plaintext refused by default
