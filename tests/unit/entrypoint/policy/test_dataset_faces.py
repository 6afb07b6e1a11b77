"""Face facts of imported datasets: `data import` leaves import-report.json beside the subsets
(people mark, --blur-faces, which detector); the dataset gatherer counts them and the rules
dataset.people_faces_blurred (strict deny, standard warn, dev off) and
dataset.face_detector_pinned (warn) judge them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from entrypoint.policy import PolicyContext, load_profile
from entrypoint.policy.engine import evaluate
from entrypoint.policy.gatherers import dataset as dataset_g
from secure_trainer.settings import DatasetSettings, SubsetSettings, TrainSettings
from tests.unit.entrypoint.policy.test_policy_engine import GOOD


def _imported(root: Path, name: str, report: dict[str, object] | None) -> Path:
    subset = root / name / "10_p0001"
    subset.mkdir(parents=True)
    if report is not None:
        (root / name / "import-report.json").write_text(json.dumps(report), encoding="utf-8")
    return subset


def _gather(tmp_path: Path, subsets: list[Path]):  # type: ignore[no-untyped-def]
    train = TrainSettings(
        pretrained_model_name_or_path=tmp_path / "m.safetensors",
        datasets=(DatasetSettings(subsets=tuple(SubsetSettings(image_dir=s, caption_extension=".txt")
                                                for s in subsets), resolution=(64, 64)),),
        output_dir=tmp_path / "out")
    return dataset_g.gather(PolicyContext(profile=load_profile("dev"), train=train))


def test_gatherer_counts_import_reports(tmp_path: Path) -> None:
    """People without blur, people blurred by Haar, no people, no report, a broken report."""
    root = tmp_path / "datasets"
    subsets = [
        _imported(root, "a", {"people": True, "blur_faces": False, "face_detector": None,
                              "faces_blurred": 0}),
        _imported(root, "b", {"people": True, "blur_faces": True, "face_detector": "haar",
                              "faces_blurred": 3}),
        _imported(root, "c", {"people": False, "blur_faces": False, "face_detector": None,
                              "faces_blurred": 0}),
        _imported(root, "d", None),
    ]
    broken = _imported(root, "e", None)
    (root / "e" / "import-report.json").write_text("{not json", encoding="utf-8")
    facts = _gather(tmp_path, [*subsets, broken])
    assert (facts.people_datasets, facts.people_not_blurred, facts.faces_haar_fallback) == (2, 1, 1)
    clean = _gather(tmp_path, [subsets[2]])
    assert (clean.people_datasets, clean.people_not_blurred, clean.faces_haar_fallback) == (0, 0, 0)


@pytest.mark.parametrize(("profile", "verdict"), [("strict", "deny"), ("standard", "warn"),
                                                  ("dev", None)])
def test_people_not_blurred_by_profile(profile: str, verdict: str | None) -> None:
    facts = replace(GOOD, dataset=replace(GOOD.dataset, people_datasets=2, people_not_blurred=1))
    decision = evaluate(load_profile(profile), facts, phase="all")
    failed = {r.id: r for r in decision.results if r.failed}
    if verdict is None:
        assert "dataset.people_faces_blurred" not in failed
        return
    rule = failed["dataset.people_faces_blurred"]
    assert rule.action == verdict
    assert rule.reason.startswith("dataset: 1 of 2 datasets") and "--blur-faces" in rule.reason


def test_haar_fallback_warns() -> None:
    facts = replace(GOOD, dataset=replace(GOOD.dataset, faces_haar_fallback=1))
    decision = evaluate(load_profile("strict"), facts, phase="all")
    assert decision.verdict == "warn"
    assert [r.id for r in decision.warnings] == ["dataset.face_detector_pinned"]
