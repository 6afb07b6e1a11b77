"""Erasure leaves nothing: a real `run` (intermediate LoRAs, state dirs, TensorBoard logs) on a
dataset imported with subject ids, then `registry erase --subject S --yes`; afterwards no file
in the whole workspace has a content hash of S's images, no run trained on S leaves a file, no
registered LoRA has S in its lineage, and the audit log verifies.

Real OpenBao, gocryptfs and trainer (tiny model, 4 steps).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from entrypoint.audit.applog import verify
from entrypoint.cli import main
from entrypoint.secret import Secret
from entrypoint.vault.devserver import DevVault
from tests.integration.run_support import RunProcess, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(args: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    for name in [n for n in os.environ if n.startswith(("VAULT_", "ST_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out + err


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]


def test_erase_subject_after_a_real_run_leaves_nothing(
        dev_vault: DevVault, tmp_path: Path, tiny_model: Any, tiny_dataset: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    case = prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)
    # subjects.csv: every image of 10_subject belongs to S-1, every image of 5_style to T-2.
    src = tmp_path / "src"
    import shutil

    shutil.copytree(tiny_dataset, src)
    rows = [f"{p.relative_to(src).as_posix()},{'S-1' if p.parent.name == '10_subject' else 'T-2'}"
            for p in sorted(src.rglob("*")) if p.suffix in (".png", ".jpg")]
    (src / "subjects.csv").write_text("path,subject\n" + "\n".join(rows) + "\n")
    env = {**case.env, "ST_MOUNTPOINT": str(case.mnt)}
    with case.opened():
        code, out = _cli(["data", "import", str(src), "--name", "people"], env, capsys,
                         monkeypatch)
        assert code == 0, out
        with closing(sqlite3.connect(case.mnt / "registry.sqlite")) as db:
            s_hashes = {r[0] for r in db.execute("SELECT sha256 FROM images WHERE subject='S-1'")}
            t_hashes = {r[0] for r in db.execute("SELECT sha256 FROM images WHERE subject='T-2'")}
    assert s_hashes and t_hashes

    run = RunProcess(case, steps=4, extra_env={"ST_AUDIT_MODE": "app", "ST_RETENTION_DAYS": "30"},
                     extra_args=("--train_data_dir", "datasets/people", "--save_every_n_steps",
                                 "2", "--save_state"))
    code, out = run.finish(timeout=600)
    assert code == 0, out[-3000:]

    with case.opened() as ws:
        (run_dir,) = list(ws.runs_dir.iterdir())
        run_files = _files(run_dir)
        assert len(run_files) >= 8  # final + step LoRAs, two state dirs, manifest, ...
        # The run anchored its log's head in Vault at teardown: the log ends exactly there.
        code, out = _cli(["audit", "verify", "--anchored"], env, capsys, monkeypatch)
        assert code == 0, out
        code, out = _cli(["registry", "list", "--json"], env, capsys, monkeypatch)
        (lora,) = json.loads(out)
        assert lora["expires"] is not None
        code, out = _cli(["registry", "show", lora["id"], "--json"], env, capsys, monkeypatch)
        shown = json.loads(out)
        assert shown["dataset"] == "people" and shown["base_model_sha256"]
        kinds = {a["kind"] for a in shown["artefacts"]}
        assert {"lora", "state", "manifest", "run"} <= kinds

        code, out = _cli(["registry", "erase", "--subject", "S-1", "--yes"], env, capsys,
                         monkeypatch)
        assert code == 0, out
        assert "audit head anchored in Vault" in out
        assert "by kind:" in out and "state=" in out and "dataset_image=" in out
        assert "datasets/" not in out and "runs/" not in out and "S-1" not in out

        # Scan the whole workspace: nothing whose content is S's, nothing of the run, no LoRA
        # whose registered lineage involves S.
        left = _files(ws.mountpoint)
        assert not [p for p in left if p.is_file() and _sha(p) in s_hashes]
        assert not run_dir.exists()
        assert not [p for p in left if p.suffix == ".safetensors"
                    and p.is_relative_to(ws.runs_dir)]
        with closing(sqlite3.connect(ws.mountpoint / "registry.sqlite")) as db:
            lineage = {r[0] for r in db.execute("SELECT image_sha256 FROM lineage")}
            assert not lineage & s_hashes
            assert not db.execute("SELECT 1 FROM images WHERE subject='S-1'").fetchall()
            assert not db.execute("SELECT 1 FROM loras").fetchall()
        assert [p for p in left if p.is_file() and _sha(p) in t_hashes]  # T untouched
        assert verify(ws.audit_dir / "app.jsonl", Secret(case.audit_key_hex())).ok
        code, out = _cli(["audit", "verify", "--anchored"], env, capsys, monkeypatch)
        assert code == 0 and "anchored" not in out.split("ok:")[0], out
