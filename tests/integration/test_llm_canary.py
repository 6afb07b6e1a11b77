"""Canary memorization audit: an over-fitted tiny model exposes its 16-repeat canary far more
than the base model does (and than its 1-repeat canary), greedy decoding extracts it, the
calibrated loss-threshold test separates its training records from held-out ones, and the
report and plot never contain a secret or pseudonym."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from secure_trainer.devtools.synthetic_text import make_text_dataset
from secure_trainer.devtools.tiny_llm import make_tiny_llm
from secure_trainer.llm.canary import SIDECAR, read_sidecar
from secure_trainer.llm.config import build_config
from secure_trainer.llm.exposure import exposure_from_rank
from secure_trainer.llm.train import train_llm
from secure_trainer.train.progress import NullProgress

pytestmark = [pytest.mark.integration]


def test_exposure_from_rank() -> None:
    assert exposure_from_rank(0, 1023) == 10.0  # best of 1024: the measurable maximum
    assert exposure_from_rank(511, 1023) == pytest.approx(1.0)  # median: one bit


def test_overfitted_canary_is_exposed_and_extracted(tmp_path: Path, one_thread: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from entrypoint.cli import main

    model = make_tiny_llm(tmp_path / "model").model_dir
    make_text_dataset(tmp_path / "data", subjects=4, per_subject=2)
    out = tmp_path / "adapter"
    config = build_config({"model_name_or_path": str(model),
                           "dataset": str(tmp_path / "data" / "alpaca.jsonl"),
                           "output_dir": str(out), "canaries": 3, "lora_rank": 8,
                           "learning_rate": 1e-2, "max_steps": 12, "cutoff_len": 64,
                           "per_device_train_batch_size": 8, "lr_scheduler_type": "constant",
                           "seed": 0})
    train_llm(config, progress=NullProgress(), warn=lambda _m: None,
              canary_rng=random.Random(5))
    canaries, template = read_sidecar(out)
    assert [c.repetitions for c in canaries] == [1, 4, 16] and template == "chat"

    # Held-out records: the same templates and names with other facts (another seed).
    make_text_dataset(tmp_path / "holdout", subjects=4, per_subject=2, seed=7)
    code = main(["audit", "canary", "--adapter", str(out), "--base", str(model),
                 "--candidates", "100", "--json",
                 "--members", str(tmp_path / "data" / "alpaca.jsonl"),
                 "--holdout", str(tmp_path / "holdout" / "alpaca.jsonl")])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report == json.loads((out / "canary-report.json").read_text())
    assert (out / "canary-exposure.png").read_bytes().startswith(b"\x89PNG")
    adapter = {c["repetitions"]: c for c in report["adapter"]}
    base = {c["repetitions"]: c for c in report["base"]}
    assert report["max_exposure"] == pytest.approx(6.658, abs=1e-3)
    assert adapter[16]["exposure"] >= 5.0
    assert adapter[16]["exposure"] > base[16]["exposure"] + 2.0
    assert adapter[16]["exposure"] > adapter[1]["exposure"]
    assert adapter[16]["extracted"] and not any(c["extracted"] for c in report["base"])
    assert report["mia"]["members"] == 9 and report["mia"]["holdout"] == 9
    assert report["mia"]["auc"] >= 0.7  # the over-fitted adapter tells its records apart
    for canary in canaries:
        for private in (canary.secret, "-".join(canary.secret), canary.pseudonym):
            assert private not in stdout and private not in stderr


def test_audit_refuses_an_adapter_without_canaries(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from entrypoint.cli import main

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "adapter_model.bin").write_bytes(b"\x80\x04.")
    code = main(["audit", "canary", "--adapter", str(tmp_path / "a"), "--base", str(tmp_path)])
    assert code == 8 and "pickle" in capsys.readouterr().err
    (tmp_path / "a" / "adapter_model.bin").unlink()
    code = main(["audit", "canary", "--adapter", str(tmp_path / "a"), "--base", str(tmp_path)])
    assert code == 8 and SIDECAR not in capsys.readouterr().err
