"""Registry: text datasets (records by content hash and subject) and dataset expiry.

A subject's erasure rewrites the JSONL without its records and deletes every run trained on a
dataset that held one; `plan_expired` deletes an expired dataset (files, captions, caches,
folder) with every run trained on it, and nothing else.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from secure_trainer.devtools.synthetic_text import make_records
from secure_trainer.llm.text_import import sanitize_lines, to_jsonl
from secure_trainer.privacy.pii import PiiMode
from secure_trainer.registry import (
    ArtefactKind,
    ImageRecord,
    Registry,
    jsonl_record_hashes,
    text_record_sha256,
)

TOMB = b"t" * 32


def _text_dataset(ws: Path, registry: Registry, name: str,
                  records: list[dict[str, object]]) -> Path:
    path = ws / "datasets" / name / "train.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(to_jsonl(records))
    registry.record_text(name, path, [(text_record_sha256(r), r.get("subject"))  # type: ignore[misc]
                                      for r in records])
    return path


def _llm_run(ws: Path, registry: Registry, run: str, data: Path, days: int = 30) -> Path:
    run_dir = ws / "runs" / run
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(run.encode() * 8)
    (run_dir / "train.log").write_text("loss 1.0\n")
    from entrypoint.run.seal import run_artefacts

    registry.register_run(run, run_dir / "adapter" / "adapter_model.safetensors", "b" * 64,
                          "x", jsonl_record_hashes(data),
                          run_artefacts(run_dir, skip=[run_dir / "adapter" /
                                                       "adapter_model.safetensors"]),
                          "o", "p", "l", timedelta(days=days))
    return run_dir


def _records() -> list[dict[str, object]]:
    lines = [json.dumps(r) for r in make_records(subjects=4, per_subject=3)]
    records, _ = sanitize_lines(lines, mode=PiiMode.REDACT)
    return records


def test_erase_subject_rewrites_jsonl_and_deletes_llm_runs(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    registry = Registry(ws / "registry.sqlite")
    records = _records()
    subject = str(records[0]["subject"])
    others = [r for r in records if r.get("subject") != subject]
    with_s = _text_dataset(ws, registry, "chat", records)
    without_s = _text_dataset(ws, registry, "clean", others)
    run_s = _llm_run(ws, registry, "run-s", with_s)
    run_t = _llm_run(ws, registry, "run-t", without_s)

    plan = registry.plan_subject(subject)
    s_records = [r for r in records if r.get("subject") == subject]
    assert len(plan.loras) == 1 and plan.loras[0].run_id == "run-s"
    kinds = [i.kind for i in plan.items]
    assert kinds.count(ArtefactKind.TEXT_RECORD) == len(s_records) > 0

    report = registry.erase(plan, tombstone_key=TOMB)
    assert report.by_kind["text_record"] == len(s_records)
    assert not run_s.exists() and run_t.is_dir()
    kept = [json.loads(ln) for ln in with_s.read_text().splitlines()]
    assert kept == others  # the rest untouched, in order
    assert without_s.read_text() == to_jsonl(others).decode()
    assert not list(with_s.parent.glob(".*erase-tmp"))
    # Nothing of S is left in the registry; the other run still is.
    assert registry.plan_subject(subject).items == ()
    assert [lo.run_id for lo in registry.loras()] == ["run-t"]


def test_text_dataset_is_found_under_its_folder(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite")
    path = _text_dataset(tmp_path, registry, "chat", _records())
    assert registry.datasets_under([path.parent]) == ["chat"]


def test_expire_deletes_expired_datasets_and_runs_on_them(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    registry = Registry(ws / "registry.sqlite")
    old = ws / "datasets" / "old"
    old.mkdir(parents=True)
    (old / "a.png").write_bytes(b"image-a")
    (old / "a.txt").write_text("a caption")
    (old / "a.npz").write_bytes(b"latents")
    registry.record_images([ImageRecord("old", str(old / "a.png"), "a" * 64, None,
                                        (str(old / "a.txt"),))])
    registry.set_dataset_expiry("old", old, timedelta(days=1))
    text = _text_dataset(ws, registry, "chat", _records())
    registry.set_dataset_expiry("chat", text.parent, timedelta(days=10))
    keep = ws / "datasets" / "keep"
    keep.mkdir()
    (keep / "b.png").write_bytes(b"image-b")
    registry.record_images([ImageRecord("keep", str(keep / "b.png"), "b" * 64, None)])
    # A run on the old image dataset (lineage "a"*64), an LLM run on the text one.
    img_run = ws / "runs" / "img"
    img_run.mkdir(parents=True)
    (img_run / "lora.safetensors").write_bytes(b"lora")
    registry.register_run("img", img_run / "lora.safetensors", None, "old", ["a" * 64], [],
                          "o", "p", "l", timedelta(days=365))
    llm_run = _llm_run(ws, registry, "llm", text, days=365)

    now = datetime.now(UTC)
    assert registry.plan_expired(now).items == ()
    plan = registry.plan_expired(now + timedelta(days=2))
    assert plan.datasets == ("old",) and [lo.run_id for lo in plan.loras] == ["img"]
    report = registry.erase(plan)
    assert report.by_kind == {"dataset_image": 1, "caption": 1, "cache": 1, "dataset": 1,
                              "lora": 1}
    assert not old.exists() and not (img_run / "lora.safetensors").exists()
    assert keep.is_dir() and text.is_file()

    plan = registry.plan_expired(now + timedelta(days=11))
    assert plan.datasets == ("chat",) and [lo.run_id for lo in plan.loras] == ["llm"]
    registry.erase(plan)
    assert not text.parent.exists() and not llm_run.exists() and (keep / "b.png").is_file()
    assert registry.plan_expired(now + timedelta(days=400)).items == ()
    # Expiry is not erasure: the content stays importable again.
    assert registry.erased_hashes() == frozenset()
