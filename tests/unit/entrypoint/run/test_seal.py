"""Sealing registers every file of the run folder by kind, the base model's hash, the datasets,
governance and expiry; the strict profile refuses a run without an expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.run.seal import (
    Governance,
    register_sealed_run,
    retention_from_env,
    run_artefacts,
)
from secure_trainer.errors import ConfigError as TrainerConfigError
from secure_trainer.registry import ImageRecord, Registry, tree_sha256

GOV = Governance("ml-team", "character LoRA", "contract", 30)


def _run_dir(ws: Path) -> Path:
    run = ws / "runs" / "r1"
    files = {
        "lora.safetensors": b"final", "lora-step00000002.safetensors": b"mid",
        "lora-step00000002-state/model.safetensors": b"s", "lora-step00000002-state/opt.bin": b"o",
        "lora-state/optimizer.bin": b"o2", "logs/events.out.tfevents.1.host": b"tb",
        "lora.dp.json": b"{}", "mia_report.json": b"{}", "train.log": b"l", "odd.bin": b"x",
    }
    for rel, data in files.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(data)
    return run


def _model(ws: Path) -> Path:
    model = ws / "models" / "tiny"
    (model / "unet").mkdir(parents=True)
    (model / "unet" / "w.bin").write_bytes(b"weights")
    (model / "model_index.json").write_text("{}")
    return model


def test_run_artefacts_cover_every_file_by_kind(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    (run / "escape").symlink_to(tmp_path, target_is_directory=True)
    arts = run_artefacts(run, skip=[run / "lora.safetensors"])
    kinds = {a.path.relative_to(run).as_posix(): a.kind.value for a in arts}
    assert kinds == {
        "lora-step00000002.safetensors": "lora",
        "lora-step00000002-state/model.safetensors": "state",
        "lora-step00000002-state/opt.bin": "state", "lora-state/optimizer.bin": "state",
        "logs/events.out.tfevents.1.host": "tensorboard", "lora.dp.json": "dp_record",
        "mia_report.json": "report", "train.log": "log", "odd.bin": "other",
        "escape": "other", "manifest.json": "manifest", ".": "run"}
    assert arts[-1].kind.value == "run"  # the whole folder is erased last


def test_register_sealed_run_records_lineage_and_governance(tmp_path: Path) -> None:
    ws = tmp_path
    run, model = _run_dir(ws), _model(ws)
    (ws / "datasets" / "people" / "3_p").mkdir(parents=True)
    img = ws / "datasets" / "people" / "3_p" / "a.png"
    img.write_bytes(b"png")
    reg = Registry(ws / "registry.sqlite")
    reg.record_images([ImageRecord("people", str(img), "h" * 64, "S-1")])
    lora_id = register_sealed_run(
        registry_path=ws / "registry.sqlite", root=ws, run_id="r1", run_dir=run,
        lora=run / "lora.safetensors", base_model=Path("models/tiny"),
        data_dirs=[Path("datasets/people/3_p")], image_hashes=["h" * 64], governance=GOV)
    rec, hashes, arts = reg.lora(lora_id)
    assert rec.base_model_sha256 == tree_sha256(model) and rec.dataset == "people"
    assert hashes == ["h" * 64] and (rec.owner, rec.legal_basis) == ("ml-team", "contract")
    expires = datetime.fromisoformat(rec.expires or "")
    assert abs(expires - datetime.now(UTC) - timedelta(days=30)) < timedelta(minutes=1)
    assert len(arts) == 11 and ("run", "runs/r1") in arts  # 9 files + manifest + folder
    # The subject plan now reaches every file of the run, and erasing leaves no trace of it.
    plan = reg.plan_subject("S-1")
    report = reg.erase(plan, tombstone_key=b"k" * 32)
    assert not run.exists() and not img.exists() and model.exists()
    assert report.by_kind["state"] == 3 and report.by_kind["run"] == 1
    assert report.by_kind["lora"] == 2 and report.by_kind["tensorboard"] == 1


def test_expiry_required_under_strict(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    _model(tmp_path)
    strict = Governance.for_policy("strict", owner="o", purpose="p", legal_basis="l",
                                   retention_days=None)
    with pytest.raises(TrainerConfigError):
        register_sealed_run(registry_path=tmp_path / "registry.sqlite", root=tmp_path,
                            run_id="r1", run_dir=run, lora=run / "lora.safetensors",
                            base_model=Path("models/tiny"), data_dirs=[], image_hashes=[],
                            governance=strict)
    assert not Registry(tmp_path / "registry.sqlite").loras()
    dev = Governance.for_policy("dev", owner="o", purpose="p", legal_basis="l",
                                retention_days=None)
    assert not dev.require_expiry


def test_retention_from_env() -> None:
    assert retention_from_env({}) is None and retention_from_env({"ST_RETENTION_DAYS": "7"}) == 7
    for bad in ("0", "-3", "7d"):
        with pytest.raises(ConfigError):
            retention_from_env({"ST_RETENTION_DAYS": bad})


def test_tree_hash_changes_with_any_file(tmp_path: Path) -> None:
    model = _model(tmp_path)
    first = tree_sha256(model)
    assert tree_sha256(model) == first
    (model / "unet" / "w.bin").write_bytes(b"weightz")
    assert tree_sha256(model) != first
