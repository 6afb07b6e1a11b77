"""`secure-trainer run --trainer llm`: train-llm in the same envelope as the image trainer —
policy with text-dataset facts, real OpenBao, real gocryptfs, app audit log, privilege drop
(where the interpreter is reachable), seal, wipe. Tiny Llama, synthetic text imported with
`data import-text` into the workspace, a few steps at cutoff 64."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.audit.applog import verify
from entrypoint.vault.devserver import DevVault
from secure_trainer.devtools.synthetic_text import make_text_dataset
from secure_trainer.devtools.tiny_llm import make_tiny_llm
from secure_trainer.registry import jsonl_record_hashes
from secure_trainer.registry.store import Registry
from tests.integration.run_support import RunCase, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]

CONFIG = """\
model_name_or_path: models/tiny-llm
dataset: datasets/notes/train.jsonl
lora_rank: 4
learning_rate: 0.01
max_steps: 3
cutoff_len: 64
per_device_train_batch_size: 4
seed: 1
"""


@pytest.fixture(scope="module")
def llm_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tiny Llama folder, synthetic text folder), built once for the module."""
    root = tmp_path_factory.mktemp("llm-src")
    make_tiny_llm(root / "model")
    make_text_dataset(root / "data", subjects=6, per_subject=3)
    return root / "model", root / "data"


def _case(dev_vault: DevVault, tmp_path: Path, sources: tuple[Path, Path],
          imports: dict[str, str]) -> RunCase:
    """A prepared workspace holding the tiny Llama and each {name: pii mode} text import."""
    empty = tmp_path / "empty-images"
    empty.mkdir()

    class _NoImageModel:  # prepare() copies an image model; the text runs need none
        diffusers_dir = empty

    case = prepare(dev_vault, tmp_path, _NoImageModel(), empty)
    with case.opened() as ws:
        shutil.copytree(sources[0], ws.models_dir / "tiny-llm")
        for name, mode in imports.items():
            proc = subprocess.run(
                [sys.executable, "-m", "entrypoint.cli", "data", "import-text",
                 str(sources[1] / "chat.jsonl"), "--workspace", str(ws.mountpoint), "--name", name,
                 "--pii", mode],
                capture_output=True, text=True, timeout=120, check=False)
            assert proc.returncode == 0, proc.stdout + proc.stderr
    return case


def _run(case: RunCase, config: str, *flags: str, policy: str | None = None) -> tuple[int, str]:
    cfg = case.tmp_path / "llm.yaml"
    cfg.write_text(config)
    proc = subprocess.run(
        [sys.executable, "-m", "entrypoint.cli", "run", "--policy", policy or case.policy(),
         "--trainer", "llm", str(cfg), *flags, "--quiet"],
        env=case.run_env(), capture_output=True, text=True, timeout=300, check=False,
        cwd=case.tmp_path)
    return proc.returncode, proc.stdout + proc.stderr


def _events(ws_audit: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (ws_audit / "app.jsonl").read_text().splitlines()]


def _outside(tmp_path: Path, name: str) -> list[Path]:
    """Copies of `name` anywhere under the test dir but the cipher store."""
    return [p for p in tmp_path.rglob(name) if "cipher" not in p.parts]


def test_run_llm_seals_adapter_inside_workspace(dev_vault: DevVault, tmp_path: Path,
                                                llm_sources: tuple[Path, Path]) -> None:
    case = _case(dev_vault, tmp_path, llm_sources, {"notes": "redact"})
    code, out = _run(case, CONFIG + "canaries: 2\n")
    assert code == 0, out[-3000:]
    assert "[train]" in out and "[seal]" in out and "done: run" in out and "adapter" in out
    assert "trained 3 steps" in out
    assert case.passphrase not in out and str(tmp_path) not in out
    assert "notes" not in out and "train.jsonl" not in out  # dataset names are redacted
    assert not case.fs.is_mounted(case.mnt) and not any(case.mnt.iterdir())
    # The adapter exists only inside the encrypted store.
    for name in ("adapter_model.safetensors", "adapter_config.json", "canaries.json"):
        assert _outside(tmp_path, name) == []
    with case.opened() as ws:
        run_dirs = [p.parent for p in ws.runs_dir.glob("*/adapter_model.safetensors")]
        assert len(run_dirs) == 1
        run_dir = run_dirs[0]
        assert (run_dir / "adapter_config.json").is_file()
        assert (run_dir / "canaries.json").is_file()
        assert not any((run_dir / "out").iterdir())  # every output moved up, nothing left
        manifest = json.loads((run_dir / "manifest.json").read_text())
        data = (ws.datasets_dir / "notes" / "train.jsonl").read_bytes()
        assert manifest["trainer"] == "train-llm" and manifest["dp"] is None
        assert manifest["dataset_sha256"] == [hashlib.sha256(data).hexdigest()]
        weights = (run_dir / "adapter_model.safetensors").read_bytes()
        assert manifest["lora_sha256"] == hashlib.sha256(weights).hexdigest()
        child_cfg = (run_dir / "train-llm.yaml").read_bytes()
        assert manifest["config_sha256"] == hashlib.sha256(child_cfg).hexdigest()
        loras = Registry(ws.registry_path).loras()
        assert [r.run_id for r in loras] == [manifest["run_id"]]
        assert loras[0].sha256 == manifest["lora_sha256"]
        result = verify(ws.audit_dir / "app.jsonl", _audit_key(case))
        assert result.ok, result.reason
        events = _events(ws.audit_dir)
        names = [e["event"] for e in events]
        assert {"policy", "vault_login", "workspace_mounted", "train_start", "train_end",
                "sealed", "teardown"} <= set(names)
        sealed = next(e for e in events if e["event"] == "sealed")
        assert sealed["seq"] == manifest["audit_seq"]
        assert sealed["fields"]["trainer"] == "train-llm"
        assert not any(ws.tmp_dir.iterdir())
        # Lineage per record: erasing one subject rewrites the JSONL without its records and
        # deletes this run (adapter and run folder) whole.
        registry = Registry(ws.registry_path)
        jsonl = ws.datasets_dir / "notes" / "train.jsonl"
        _, lineage, _ = registry.lora(loras[0].id)
        assert set(jsonl_record_hashes(jsonl)) <= set(lineage)
        records = [json.loads(ln) for ln in jsonl.read_text().splitlines()]
        subject = records[0]["subject"]
        report = registry.erase(registry.plan_subject(subject), tombstone_key=b"k" * 32)
        assert report.by_kind["text_record"] == sum(r["subject"] == subject for r in records)
        assert not run_dir.exists() and registry.loras() == []
        assert [json.loads(ln) for ln in jsonl.read_text().splitlines()] == [
            r for r in records if r["subject"] != subject]


def _audit_key(case: RunCase) -> object:
    from entrypoint.vault.client import VaultClient
    from entrypoint.vault.settings import VaultSettings

    with VaultClient.from_settings(VaultSettings.from_env(case.env)) as vault:
        vault.login()
        return vault.audit_key()


def test_run_llm_dp_records_epsilon(dev_vault: DevVault, tmp_path: Path,
                                    llm_sources: tuple[Path, Path]) -> None:
    case = _case(dev_vault, tmp_path, llm_sources, {"notes": "redact"})
    code, out = _run(case, CONFIG, "--dp", "true", "--target_epsilon", "8",
                     "--max_grad_norm", "0.5")
    assert code == 0, out[-3000:]
    assert "dp: ε=" in out
    with case.opened() as ws:
        manifest = json.loads(next(ws.runs_dir.glob("*/manifest.json")).read_text())
        dp = manifest["dp"]
        assert 0 < dp["epsilon"] <= 8.0 and dp["privacy_unit"] == "subject"
        assert dp["max_grad_norm"] == 0.5
        event = next(e["fields"] for e in _events(ws.audit_dir) if e["event"] == "dp")
        assert event["epsilon"] == dp["epsilon"] and event["privacy_unit"] == "subject"
        assert event["target_epsilon"] == 8.0


def test_run_llm_denied_before_training(dev_vault: DevVault, tmp_path: Path,
                                        llm_sources: tuple[Path, Path]) -> None:
    case = _case(dev_vault, tmp_path, llm_sources, {"notes": "redact", "raw": "report"})
    site = tmp_path / "site.yaml"  # dev (native), with the workspace rule a deny again
    site.write_text(f"name: site\ndescription: test\nextends: {case.policy()}\noverride:\n"
                    "  - id: training.paths_in_workspace\n    action: deny\n")
    plain = tmp_path / "plain-out"
    code, out = _run(case, CONFIG + f"output_dir: {plain}\n", policy=str(site))
    assert code == 3, out[-3000:]
    assert "training.paths_in_workspace" in out and "[train]" not in out
    assert not plain.exists()
    outside_model = tmp_path / "outside-model"
    shutil.copytree(llm_sources[0], outside_model)
    code, out = _run(case, CONFIG.replace("models/tiny-llm", str(outside_model)),
                     policy=str(site))
    assert code == 3 and "training.paths_in_workspace" in out and "[train]" not in out, out
    # PII found and kept (`--pii report`) is refused by the shipped dev profile itself.
    code, out = _run(case, CONFIG.replace("datasets/notes", "datasets/raw"))
    assert code == 3 and "dataset.no_text_pii" in out and "[train]" not in out, out
    # A user output_dir inside the workspace passes the policy but `run` picks the place.
    code, out = _run(case, CONFIG + "output_dir: runs/mine\n")
    assert code == 2 and "drop output_dir" in out and "[train]" not in out, out
    assert _outside(tmp_path, "adapter_model.safetensors") == []
    with case.opened() as ws:
        denied = [e for e in _events(ws.audit_dir) if e["event"] == "policy_denied"]
        assert len(denied) == 3
        assert not list(ws.runs_dir.glob("*/adapter_model.safetensors"))
