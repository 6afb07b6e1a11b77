"""Facts of a train-llm job (`run --trainer llm`) and the rules that judge text datasets: real
files (a JSONL with and without PII, safetensors and pickle weights), the shipped profiles."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from entrypoint.errors import DataRejected
from entrypoint.policy import PolicyContext, load_profile
from entrypoint.policy.engine import evaluate
from entrypoint.policy.gatherers import GATHERERS
from secure_trainer.llm.config import build_config
from tests.unit.entrypoint.policy.test_policy_engine import GOOD, failed
from tests.unit.entrypoint.policy.test_policy_facts import write_safetensors

CLEAN = {"messages": [{"role": "user", "content": "what is the plan?"},
                      {"role": "assistant", "content": "the plan is <EMAIL> at noon"}]}
DIRTY = {"instruction": "mail the client", "output": "write to jane.doe@example.org today"}


def _workspace(tmp_path: Path, records: list[dict[str, object]], *,
               report: dict[str, object] | None = None) -> Path:
    ws = tmp_path / "ws"
    model = ws / "models" / "llm"
    model.mkdir(parents=True)
    write_safetensors(model / "model.safetensors")
    data = ws / "datasets" / "notes"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if report is not None:
        (data / "import-report.json").write_text(json.dumps(report))
    return ws


def _ctx(ws: Path, **config: object) -> PolicyContext:
    raw = {"model_name_or_path": str(ws / "models" / "llm"),
           "dataset": str(ws / "datasets" / "notes" / "train.jsonl"),
           "output_dir": str(ws / "runs" / "x" / "out"), **config}
    return PolicyContext(profile=load_profile("strict"), train=build_config(raw),
                         workspace_dir=ws)


def _facts(ctx: PolicyContext):  # type: ignore[no-untyped-def]
    return replace(GOOD, **{s: GATHERERS[s](ctx) for s in ("model", "dataset", "training")})


def test_clean_text_dataset_passes_every_strict_rule(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, [{**CLEAN, "subject": "s1"}, {**CLEAN, "subject": "s2"}],
                    report={"dataset": "notes", "pii_mode": "redact", "records_kept": 2})
    ctx = _ctx(ws, dp=True, target_epsilon=8, canaries=2)
    facts = _facts(ctx)
    assert facts.model.format == "safetensors" and facts.model.pickle_files == 0
    d = facts.dataset
    assert (d.kind, d.records, d.records_with_pii, d.subjects, d.records_without_subject) == \
        ("text", 2, 0, 2, 0)
    assert d.import_report is True and d.pii_mode == "redact" and d.images == 0
    t = facts.training
    assert (t.trainer, t.dp_unit, t.canaries, t.dp_target_epsilon) == ("llm", "subject", 2, 8.0)
    assert t.model_in_workspace and t.dataset_in_workspace and t.output_in_workspace
    assert failed(evaluate(load_profile("strict"), facts, phase="all")) == {}
    assert "notes" not in json.dumps(facts.to_dict())  # no dataset name or path in a fact


def test_unredacted_pii_and_missing_subjects_are_denied(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, [DIRTY, {**CLEAN, "subject": "s1"}],
                    report={"pii_mode": "report"})
    facts = _facts(_ctx(ws, dp=True, target_epsilon=8))
    assert facts.dataset.records_with_pii == 1 and facts.dataset.pii_by_type["EMAIL"] == 1
    assert facts.dataset.records_without_subject == 1 and facts.dataset.pii_mode == "report"
    for profile in ("strict", "standard", "dev"):
        assert failed(evaluate(load_profile(profile), facts, phase="all")) == {
            "dataset.no_text_pii": "fail", "dataset.subjects_cover_records": "fail"}, profile
    # Record-level DP needs no subject.
    facts = _facts(_ctx(ws, dp=True, target_epsilon=8, dp_unit="record"))
    assert "dataset.subjects_cover_records" not in failed(
        evaluate(load_profile("strict"), facts, phase="all"))


def test_paths_outside_and_pickles_and_missing_files(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, [{**CLEAN, "subject": "s1"}])
    (ws / "models" / "llm" / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    ctx = _ctx(ws, output_dir=str(tmp_path / "plain"))
    facts = _facts(ctx)
    assert facts.model.format == "pickle" and facts.model.pickle_files == 1
    assert facts.dataset.import_report is False and facts.dataset.pii_mode is None
    assert failed(evaluate(load_profile("strict"), facts, phase="all")) == {
        "model.safetensors_only": "fail", "training.output_in_workspace": "fail",
        "training.paths_in_workspace": "fail", "training.dp_enabled": "fail"}
    (ws / "datasets" / "notes" / "train.jsonl").unlink()
    facts = _facts(_ctx(ws))
    assert facts.dataset.missing_dirs == 1
    assert "dataset.present" in failed(evaluate(load_profile("strict"), facts, phase="all"))


def test_a_line_that_is_not_json_is_rejected_without_its_text(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, [CLEAN])
    with open(ws / "datasets" / "notes" / "train.jsonl", "a") as fh:
        fh.write("secret-name {not json\n")
    with pytest.raises(DataRejected) as err:
        GATHERERS["dataset"](_ctx(ws))
    assert "secret-name" not in str(err.value) and "notes" not in str(err.value)


def test_kohya_facts_keep_their_defaults() -> None:
    assert GOOD.dataset.kind == "images" and GOOD.dataset.records == 0
    assert GOOD.training.trainer == "kohya" and GOOD.training.dp_unit == "image"
    assert failed(evaluate(load_profile("strict"), GOOD, phase="all")) == {}
