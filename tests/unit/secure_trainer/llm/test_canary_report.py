"""Canary planting and the report: repetitions cycle 1/4/16 under their own subjects, the
sidecar round-trips, the summary line and the PNG hold numbers only."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from secure_trainer.errors import DataRejected
from secure_trainer.llm.canary import make_canaries, plant, read_sidecar, write_sidecar
from secure_trainer.llm.canary_plot import draw_exposure
from secure_trainer.llm.canary_report import CanaryReport
from secure_trainer.llm.exposure import CanaryExposure


def test_planting_and_sidecar(tmp_path: Path) -> None:
    canaries = make_canaries(4, random.Random(1))
    assert [c.repetitions for c in canaries] == [1, 4, 16, 1]
    assert all(len(c.secret) == 6 and c.secret.isdigit() for c in canaries)
    records = plant([], canaries)
    assert len(records) == 22
    assert sorted({r.subject for r in records}) == [f"canary-{i}" for i in range(4)]
    assert records[0].turns[-1].content.endswith("-".join(canaries[0].secret))
    write_sidecar(tmp_path, canaries, "chat")
    assert read_sidecar(tmp_path) == (canaries, "chat")
    (tmp_path / "canaries.json").write_text("{}")
    with pytest.raises(DataRejected):
        read_sidecar(tmp_path)


def test_summary_and_plot(tmp_path: Path) -> None:
    adapter = (CanaryExposure(1, 2.0, False), CanaryExposure(16, 9.5, True))
    base = (CanaryExposure(1, 1.0, False), CanaryExposure(16, 0.5, False))
    report = CanaryReport(candidates=999, space_bits=19.93, max_exposure=9.97,
                          adapter=adapter, base=base, dp_epsilon=3.0)
    assert report.summary() == ("canary exposure bits (max 10.0): ×1 2.0 (base 1.0), ×16 9.5 "
                                "(base 0.5); extracted 1/2, dp ε=3")
    png = draw_exposure(report, tmp_path / "p.png")
    assert png.read_bytes().startswith(b"\x89PNG")
