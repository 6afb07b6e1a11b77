"""`data import` records how faces were handled (import-report.json, counts only), and the
policy's dataset facts read it: a people dataset imported without --blur-faces is denied by
strict; with --blur-faces the real face is blurred by CenterFace and nothing is flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrypoint.cli import main
from entrypoint.policy import PolicyContext, load_profile
from entrypoint.policy.engine import evaluate
from entrypoint.policy.facts import Facts
from entrypoint.policy.gatherers import dataset as dataset_g
from secure_trainer.settings import DatasetSettings, SubsetSettings, TrainSettings
from tests.unit.secure_trainer.privacy.test_sanitize_faces import real_face_photo


def _import(src: Path, ws: Path, name: str, *flags: str) -> dict[str, object]:
    code = main(["data", "import", str(src), "--workspace", str(ws), "--name", name,
                 "--unsafe-plaintext-dest", "--json", *flags])
    assert code == 0
    report = json.loads((ws / "datasets" / name / "import-report.json").read_text())
    assert isinstance(report, dict)
    return report


def _facts(ws: Path, name: str):  # type: ignore[no-untyped-def]
    subsets = [p for p in (ws / "datasets" / name).iterdir() if p.is_dir()]
    train = TrainSettings(
        pretrained_model_name_or_path=ws / "m.safetensors",
        datasets=(DatasetSettings(subsets=tuple(SubsetSettings(image_dir=s,
                                                               caption_extension=".txt")
                                                for s in subsets), resolution=(64, 64)),),
        output_dir=ws / "out")
    return dataset_g.gather(PolicyContext(profile=load_profile("dev"), train=train))


def test_people_import_without_and_with_blur(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src" / "3_crew"
    src.mkdir(parents=True)
    real_face_photo().save(src / "portrait.jpg", quality=95)
    ws = tmp_path / "ws"
    ws.mkdir()
    plain = _import(tmp_path / "src", ws, "plain", "--people")
    assert plain == {"people": True, "blur_faces": False, "face_detector": None,
                     "faces_blurred": 0, "face_scan": True, "faces_found_not_blurred": 1}
    blurred = _import(tmp_path / "src", ws, "blurred", "--people", "--blur-faces")
    assert blurred == {"people": True, "blur_faces": True, "face_detector": "centerface",
                       "faces_blurred": 1, "face_scan": False, "faces_found_not_blurred": 0}
    capsys.readouterr()
    strict = load_profile("strict")
    bad = _facts(ws, "plain")
    assert (bad.people_datasets, bad.people_not_blurred) == (1, 1)
    decision = evaluate(strict, Facts(dataset=bad), phase="all",
                        not_applicable=frozenset({"process", "fs", "network", "gpu", "vault",
                                                  "audit", "model", "training"}))
    assert "dataset.people_faces_blurred" in {r.id for r in decision.denials}
    good = _facts(ws, "blurred")
    assert (good.people_datasets, good.people_not_blurred, good.faces_haar_fallback) == (1, 0, 0)
    assert (bad.faces_found_not_blurred, good.faces_found_not_blurred) == (1, 0)


def _decide(profile: str, facts):  # type: ignore[no-untyped-def]
    return evaluate(load_profile(profile), Facts(dataset=facts), phase="all",
                    not_applicable=frozenset({"process", "fs", "network", "gpu", "vault",
                                              "audit", "model", "training"}))


def test_faces_found_but_not_blurred_warns_without_people_mark(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not marked as people: the scan still finds the face; standard and strict warn, dev is
    silent; --no-face-scan records that nothing was scanned; an image without a face is clean."""
    src = tmp_path / "src" / "2_shots"
    src.mkdir(parents=True)
    real_face_photo().save(src / "portrait.jpg", quality=95)
    ws = tmp_path / "ws"
    ws.mkdir()
    report = _import(tmp_path / "src", ws, "shots")
    assert (report["people"], report["faces_found_not_blurred"]) == (False, 1)
    facts = _facts(ws, "shots")
    assert (facts.people_datasets, facts.faces_found_not_blurred) == (0, 1)
    for profile in ("standard", "strict"):
        decision = _decide(profile, facts)
        assert "dataset.faces_found_blurred" in {r.id for r in decision.warnings}
        assert "dataset.faces_found_blurred" not in {r.id for r in decision.denials}
    dev = _decide("dev", facts)
    assert "dataset.faces_found_blurred" not in {r.id for r in dev.warnings}
    unscanned = _import(tmp_path / "src", ws, "unscanned", "--no-face-scan")
    assert (unscanned["face_scan"], unscanned["faces_found_not_blurred"]) == (False, 0)
    capsys.readouterr()
