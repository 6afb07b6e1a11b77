"""`dev tiny-llm` and `dev text-dataset` through the CLI: one line of counts, no path."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]


def test_dev_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from entrypoint.cli import main

    assert main(["dev", "text-dataset", str(tmp_path / "d"), "--subjects", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("text dataset: 3 subjects, 10 records") and str(tmp_path) not in out
    assert (tmp_path / "d" / "alpaca.jsonl").is_file() and (tmp_path / "d" / "chat.jsonl").is_file()
    assert main(["dev", "tiny-llm", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny llm: ") and len(out.splitlines()) == 1
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert main(["dev", "text-dataset", str(tmp_path / "e"), "--subjects", "0"]) == 2
