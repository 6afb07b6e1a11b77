"""The train-llm bench runs end to end (shrunk): bare loop, train-llm and DP on the same
batches, each with steps, s/step and peak RSS measured from its own subprocess."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from secure_trainer.devtools.llm_bench import run, table

pytestmark = [pytest.mark.integration]


def test_bench_small(tmp_path: Path) -> None:
    rows, tokens = run(tmp_path, steps=4, hidden=64, layers=2, warmup=1)
    assert [r.variant for r in rows] == ["bare transformers+peft", "train-llm",
                                         "train-llm --dp"]
    assert all(r.steps == 4 and math.isfinite(r.seconds_per_step) and r.seconds_per_step > 0
               and r.peak_rss_bytes > 100 * 2**20 for r in rows)
    assert tokens > 10
    text = table(rows, tokens)
    assert text.count("\n| ") == 3 and "non-DP" in text
