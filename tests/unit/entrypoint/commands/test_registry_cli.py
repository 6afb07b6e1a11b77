"""`secure-trainer registry ...` end to end: find, erase with an audit tombstone that verifies
in E's hash-chained app log, expire, and fail-closed ordering (no key → nothing deleted)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from entrypoint.audit import applog
from entrypoint.audit.applog import derive_tombstone_key
from entrypoint.cli import main
from entrypoint.commands.registry_cmd import AUDIT_LOG_RELPATH
from entrypoint.secret import Secret
from secure_trainer.registry import Artefact, ArtefactKind, Registry, subject_tag

AUDIT_KEY = b"audit-key-for-tests-0123456789abcdef"


def _cli(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
         stdin: bytes = b"") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ws(tmp_path: Path, capsys: pytest.CaptureFixture[str],
       monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace with dataset `people` (S: 2 images, T: 1) and two runs: A (all), B (T only)."""
    src, ws = tmp_path / "src", tmp_path / "ws"
    (src / "3_alice").mkdir(parents=True)
    (src / "3_bob").mkdir(parents=True)
    for rel, colour in {"3_alice/a1.png": (250, 0, 0), "3_alice/a2.png": (0, 250, 0),
                        "3_bob/b1.png": (0, 0, 250)}.items():
        Image.new("RGB", (8, 8), colour).save(src / rel)
        (src / rel).with_suffix(".txt").write_text("a caption")
    (src / "subjects.csv").write_text(
        "path,subject\n3_alice/a1.png,S-1\n3_alice/a2.png,S-1\n3_bob/b1.png,T-2\n")
    ws.mkdir()
    monkeypatch.setenv("ST_MOUNTPOINT", str(ws))
    code, _, err = _cli(["data", "import", str(src), "--name", "people",
                         "--unsafe-plaintext-dest"], capsys, monkeypatch)
    assert code == 0, err
    reg = Registry(ws / "registry.sqlite")
    t_hashes = set(reg.plan_subject("T-2").image_hashes)
    for run, hashes, expires in (("run-a", reg.dataset_hashes("people"), None),
                                 ("run-b", sorted(t_hashes), timedelta(days=1))):
        base = ws / "runs" / run
        (base / "state").mkdir(parents=True)
        (base / "state" / "opt.bin").write_bytes(b"s")
        (base / "tb").mkdir()
        (base / "tb" / "events").write_bytes(b"t")
        (base / "lora.safetensors").write_bytes(run.encode())
        reg.register_run(run, base / "lora.safetensors", None, "people", hashes,
                         [Artefact(ArtefactKind.STATE, base / "state"),
                          Artefact(ArtefactKind.TENSORBOARD, base / "tb")],
                         "team", "test", "consent", expires=expires)
    return ws


def _verify(ws: Path) -> list[dict[str, object]]:
    log = ws / AUDIT_LOG_RELPATH
    result = applog.verify(log, Secret(AUDIT_KEY))
    assert result.ok, result.reason
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_list_show_find_print_no_names(ws: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """list/show/find print ids, kinds and hashes; paths only with --show-paths."""
    code, out, _ = _cli(["registry", "list", "--unsafe-plaintext-dest", "--json"], capsys,
                        monkeypatch)
    loras = json.loads(out)
    assert code == 0 and {lo["run_id"] for lo in loras} == {"run-a", "run-b"}
    code, out, _ = _cli(["registry", "show", loras[0]["id"], "--unsafe-plaintext-dest"],
                        capsys, monkeypatch)
    assert code == 0 and "legal_basis: consent" in out and "runs/" not in out
    code, out, _ = _cli(["registry", "find", "--subject", "S-1", "--unsafe-plaintext-dest"],
                        capsys, monkeypatch)
    assert code == 0 and "loras: 1  images: 2" in out
    assert "alice" not in out and "datasets/" not in out and "runs/" not in out
    code, out, _ = _cli(["registry", "find", "--subject", "S-1", "--unsafe-plaintext-dest",
                         "--show-paths"], capsys, monkeypatch)
    assert "datasets/people/" in out and "runs/run-a/state" in out
    code, _, _ = _cli(["registry", "show", "Lnope", "--unsafe-plaintext-dest"], capsys,
                      monkeypatch)
    assert code == 2


def test_erase_subject_with_tombstone(ws: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --yes nothing goes; with it S's data and run A go, T and run B stay, and the
    `erasure` record (hashes only) verifies in the audit chain."""
    before = sorted(p for p in ws.rglob("*") if p.is_file())
    code, out, _ = _cli(["registry", "erase", "--subject", "S-1", "--unsafe-plaintext-dest"],
                        capsys, monkeypatch)
    assert code == 0 and "nothing deleted" in out
    assert sorted(p for p in ws.rglob("*") if p.is_file()) == before

    code, out, err = _cli(["registry", "erase", "--subject", "S-1", "--yes", "--audit-key-stdin",
                           "--unsafe-plaintext-dest"], capsys, monkeypatch, stdin=AUDIT_KEY)
    assert code == 0, err
    assert "deleted 1 LoRA(s) whole" in out
    assert not (ws / "runs" / "run-a").joinpath("lora.safetensors").exists()
    assert not any((ws / "runs" / "run-a").rglob("*"))
    assert (ws / "runs" / "run-b" / "lora.safetensors").exists()
    assert len(list((ws / "datasets" / "people").rglob("*.png"))) == 1
    assert len(list((ws / "datasets" / "people").rglob("*.txt"))) == 1
    records = _verify(ws)
    erasure = [r for r in records if r.get("event") == "erasure"]
    assert len(erasure) == 1
    text = json.dumps(erasure[0])
    tag = subject_tag("S-1", derive_tombstone_key(Secret(AUDIT_KEY)).reveal())
    assert erasure[0]["fields"]["subject_hmac"] == tag  # type: ignore[index]
    assert hashlib.sha256(b"S-1").hexdigest() not in text
    assert "S-1" not in text.replace(tag, "")
    assert "alice" not in text and "datasets/" not in text


def test_expire_with_tombstone(ws: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Run B expires after a day: `expire --now +2d` deletes it (only) and logs the tombstone."""
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    code, _, err = _cli(["registry", "expire", "--yes", "--audit-key-stdin", "--now", later,
                           "--unsafe-plaintext-dest"], capsys, monkeypatch, stdin=AUDIT_KEY)
    assert code == 0, err
    assert not (ws / "runs" / "run-b" / "lora.safetensors").exists()
    assert (ws / "runs" / "run-a" / "lora.safetensors").exists()
    assert [r["event"] for r in _verify(ws)][-1] == "erasure"


def test_no_audit_key_means_nothing_deleted(ws: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With no Vault configured and no --audit-key-stdin, erase fails before deleting."""
    for var in [v for v in os.environ if v.startswith(("VAULT_", "ST_VAULT_"))]:
        monkeypatch.delenv(var)
    before = sorted(p for p in ws.rglob("*") if p.is_file())
    code, _, err = _cli(["registry", "erase", "--subject", "S-1", "--yes",
                         "--unsafe-plaintext-dest"], capsys, monkeypatch)
    assert code in (2, 4), err
    assert sorted(p for p in ws.rglob("*") if p.is_file()) == before


def test_dataset_retention_then_expire_deletes_dataset_and_runs_on_it(
        ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`data import --retention-days 3`: `expire` before then keeps it; after, the dataset's
    files, captions and folder go with every run trained on it, and counts print by kind."""
    src = tmp_path / "src2" / "2_thing"
    src.mkdir(parents=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(src / "x.png")
    (src / "x.txt").write_text("a caption")
    code, _, err = _cli(["data", "import", str(src.parent), "--name", "short",
                         "--retention-days", "3", "--unsafe-plaintext-dest"], capsys, monkeypatch)
    assert code == 0, err
    reg = Registry(ws / "registry.sqlite")
    run = ws / "runs" / "run-c"
    run.mkdir(parents=True)
    (run / "lora.safetensors").write_bytes(b"c")
    reg.register_run("run-c", run / "lora.safetensors", None, "short",
                     reg.dataset_hashes("short"), [Artefact(ArtefactKind.RUN, run)],
                     "team", "test", "consent", expires=timedelta(days=365))
    soon = (datetime.now(UTC) + timedelta(days=2, hours=23)).isoformat()
    code, out, err = _cli(["registry", "expire", "--yes", "--audit-key-stdin", "--now", soon,
                           "--unsafe-plaintext-dest"], capsys, monkeypatch, stdin=AUDIT_KEY)
    assert code == 0 and (ws / "datasets" / "short").is_dir() and run.is_dir(), out + err
    later = (datetime.now(UTC) + timedelta(days=3, hours=1)).isoformat()
    code, out, err = _cli(["registry", "expire", "--yes", "--audit-key-stdin", "--now", later,
                           "--unsafe-plaintext-dest"], capsys, monkeypatch, stdin=AUDIT_KEY)
    assert code == 0, err
    assert "deleted: caption=1, dataset=1, dataset_image=1, lora=1, run=1" in out
    assert not (ws / "datasets" / "short").exists() and not run.exists()
    assert (ws / "runs" / "run-a" / "lora.safetensors").exists()  # no expiry
    assert len(list((ws / "datasets" / "people").rglob("*.png"))) == 3
    assert _verify(ws)[-1]["fields"]["datasets"] == 1  # type: ignore[index]
    code, _, err = _cli(["data", "import", str(src.parent), "--name", "bad",
                         "--retention-days", "0", "--unsafe-plaintext-dest"], capsys, monkeypatch)
    assert code == 2 and not (ws / "datasets" / "bad").exists()


def test_text_import_registers_subjects_and_erase_covers_text(
        ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`data import-text` records each record's hash and subject: `find --subject` lists the
    records, `erase` rewrites the JSONL without them and deletes the LLM run trained on it."""
    from secure_trainer.devtools.synthetic_text import make_text_dataset
    from secure_trainer.registry import jsonl_record_hashes

    corpus = tmp_path / "corpus"
    make_text_dataset(corpus)
    code, _, err = _cli(["data", "import-text", str(corpus / "alpaca.jsonl"), "--name", "chat",
                         "--retention-days", "2", "--unsafe-plaintext-dest"], capsys, monkeypatch)
    assert code == 0, err
    data = ws / "datasets" / "chat" / "train.jsonl"
    records = [json.loads(ln) for ln in data.read_text().splitlines()]
    subject = records[0]["subject"]
    mine = [r for r in records if r["subject"] == subject]
    reg = Registry(ws / "registry.sqlite")
    run = ws / "runs" / "llm-1"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"a")
    reg.register_run("llm-1", run / "adapter" / "adapter_model.safetensors", None, "chat",
                     jsonl_record_hashes(data), [Artefact(ArtefactKind.RUN, run)],
                     "team", "test", "consent")
    code, out, _ = _cli(["registry", "find", "--subject", subject, "--json",
                         "--unsafe-plaintext-dest"], capsys, monkeypatch)
    plan = json.loads(out)
    assert [i["kind"] for i in plan["items"]].count("text_record") == len(mine)
    assert len(plan["loras"]) == 1
    code, out, err = _cli(["registry", "erase", "--subject", subject, "--yes",
                           "--audit-key-stdin", "--unsafe-plaintext-dest"], capsys, monkeypatch,
                          stdin=AUDIT_KEY)
    assert code == 0, err
    assert f"text_record={len(mine)}" in out and subject not in out
    left = [json.loads(ln) for ln in data.read_text().splitlines()]
    assert left == [r for r in records if r["subject"] != subject]
    assert not run.exists()
    later = datetime.now(UTC) + timedelta(days=2, hours=1)
    assert reg.plan_expired(datetime.now(UTC)).datasets == ()
    assert reg.plan_expired(later).datasets == ("chat",)  # --retention-days 2
