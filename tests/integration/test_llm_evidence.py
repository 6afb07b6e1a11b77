"""The evidence table runs end to end (shrunk): three settings, ε only for the DP rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from secure_trainer.devtools.llm_evidence import EvidenceSize, run, table

pytestmark = [pytest.mark.integration]


def test_evidence_table_small(tmp_path: Path, one_thread: None) -> None:
    rows = run(tmp_path, EvidenceSize(subjects=6, per_subject=2, steps=3, candidates=20,
                                      canaries=3))
    assert [label for label, _ in rows] == ["no DP", "ε = 8", "ε = 1"]
    assert rows[0][1].dp_epsilon is None
    assert 0 < rows[1][1].dp_epsilon <= 8.0 and 0 < rows[2][1].dp_epsilon <= 1.0  # type: ignore[operator]
    text = table(rows)
    assert text.count("\n| ") == 3 and "MIA AUC" in text and "exposure ×16" in text
