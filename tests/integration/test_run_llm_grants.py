"""`run --trainer llm` as the training uid: the child reads its config, the model folder and the
one JSONL file and nothing else of the workspace, and a non-regular adapter file fails the seal.

The native venv is not reachable by uid 10001, so the child is a script run through `setpriv`
with the production drop's settings, injected as the Lifecycle's trainer (as in
tests/adversarial/). Real OpenBao, gocryptfs and app audit log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.audit.auditctl import Auditctl, AuditMode
from entrypoint.errors import TrainingError
from entrypoint.run.access import SUPERVISOR_UMASK
from entrypoint.run.lifecycle import Lifecycle, RunSettings
from entrypoint.vault.client import VaultClient
from entrypoint.vault.settings import VaultSettings
from secure_trainer.devtools.synthetic_text import make_text_dataset
from tests.integration.run_support import RunCase, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root]

IDS = (10001, 10001)
PROBE = 'probe() { if sh -c "$2" >/dev/null 2>&1; then echo "READ $1"; else echo "DENIED $1"; fi; }\n'
PROBES = (
    'probe config "cat $CONFIG"\n'
    'probe model "cat models/tiny-llm/config.json models/tiny-llm/weights.safetensors"\n'
    'probe dataset "cat datasets/notes/train.jsonl"\n'
    'probe import-report "cat datasets/notes/import-report.json"\n'
    'probe other-dataset "cat datasets/raw/train.jsonl"\n'
    'probe datasets-listing "ls datasets/notes"\n'
    'probe registry "cat registry.sqlite"\n'
    'probe audit-log "cat audit/app.jsonl"\n'
    'OUT="$(dirname "$CONFIG")/out"\n'
    'printf "{}" > "$OUT/adapter_model.safetensors"\n')


class ScriptTrainer:
    """A `TrainerSpawner` running `script` with /bin/sh as the training uid ($CONFIG set)."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.lines: list[str] = []
        self.commands: list[str] = []

    def __call__(self, args: list[str], *, cwd: Path, tmp: Path, ids: tuple[int, int] | None,
                 extra_env: dict[str, str], redact: list[str],
                 echo: Callable[[str], None], command: str = "train") -> int:
        assert ids is not None
        self.commands.append(command)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "LANG": "C.UTF-8", "CONFIG": args[0]}
        done = subprocess.run(
            ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups",
             "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs",
             "--", "/bin/sh", "-c", PROBE + self.script],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=120, check=False)
        for line in done.stdout.splitlines():
            self.lines.append(line)
            echo(line)
        return done.returncode

    def verdicts(self) -> dict[str, str]:
        """label -> READ | DENIED."""
        return {label: word for word, _, label in (ln.partition(" ") for ln in self.lines)
                if word in ("READ", "DENIED")}


@pytest.fixture
def case(dev_vault: Any, tmp_path: Path) -> Iterator[RunCase]:
    """A workspace with a stand-in model folder and two text imports (notes, raw), owner-only,
    under the supervisor's umask."""
    empty = tmp_path / "empty"
    empty.mkdir()

    class _NoImageModel:
        diffusers_dir = empty

    make_text_dataset(tmp_path / "src", subjects=3, per_subject=2)
    old = os.umask(SUPERVISOR_UMASK)
    try:
        run_case = prepare(dev_vault, tmp_path, _NoImageModel(), empty)
        with run_case.opened() as ws:
            model = ws.models_dir / "tiny-llm"
            model.mkdir()
            (model / "config.json").write_text("{}")
            shutil.copy(Path(__file__).parent / "run_support.py", model / "weights.safetensors")
            for name in ("notes", "raw"):
                proc = subprocess.run(
                    [sys.executable, "-m", "entrypoint.cli", "data", "import-text",
                     str(tmp_path / "src" / "chat.jsonl"), "--workspace", str(ws.mountpoint),
                     "--name", name], capture_output=True, text=True, timeout=120, check=False)
                assert proc.returncode == 0, proc.stderr
            for p in [ws.models_dir, ws.datasets_dir, *ws.models_dir.rglob("*"),
                      *ws.datasets_dir.rglob("*")]:
                p.chmod(0o700 if p.is_dir() else 0o600)
        yield run_case
    finally:
        os.umask(old)


def _lifecycle(case: RunCase, trainer: ScriptTrainer) -> Lifecycle:
    cfg = case.tmp_path / "llm.yaml"
    cfg.write_text("model_name_or_path: models/tiny-llm\ndataset: datasets/notes/train.jsonl\n"
                   "max_steps: 1\n")
    site = case.tmp_path / "site.yaml"  # the stand-in weights are not safetensors
    site.write_text("name: site\ndescription: test\nextends: dev\noverride:\n"
                    "  - id: model.safetensors_only\n    action: warn\n")
    settings = RunSettings(cipher_dir=case.cipher, mountpoint=case.mnt, state_dir=case.state,
                           policy=str(site), train_args=(str(cfg),), train_ids=IDS,
                           audit_mode=AuditMode.APP, trainer="llm")
    vault = VaultClient.from_settings(VaultSettings.from_env(case.env))
    return Lifecycle(settings, vault=vault, gocryptfs=case.fs, auditctl=Auditctl(),
                     echo=lambda _line: None, trainer=trainer)


def test_llm_child_reads_only_its_config_model_and_jsonl(case: RunCase) -> None:
    trainer = ScriptTrainer(PROBES + 'printf "{}" > "$OUT/adapter_config.json"\n')
    adapter = _lifecycle(case, trainer).execute()
    assert trainer.commands == ["train-llm"]
    assert trainer.verdicts() == {
        "config": "READ", "model": "READ", "dataset": "READ", "import-report": "DENIED",
        "other-dataset": "DENIED", "datasets-listing": "DENIED", "registry": "DENIED",
        "audit-log": "DENIED"}, trainer.lines
    assert adapter.name == "adapter_model.safetensors"
    with case.opened() as ws:
        run_dir = ws.runs_dir / adapter.parent.name
        st = (run_dir / "adapter_config.json").stat()
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o400)  # taken back: root's, read-only
        assert (run_dir / "manifest.json").is_file()
        # Grants are revoked in teardown: the model and dataset are owner-only again.
        assert not (ws.datasets_dir / "notes" / "train.jsonl").stat().st_mode & 0o077
        assert not (ws.models_dir / "tiny-llm").stat().st_mode & 0o077


def test_llm_adapter_link_fails_the_seal(case: RunCase) -> None:
    trainer = ScriptTrainer(PROBES + 'ln -s /etc/shadow "$OUT/adapter_config.json"\n')
    with pytest.raises(TrainingError, match="not a regular file"):
        _lifecycle(case, trainer).execute()
    with case.opened() as ws:
        assert not list(ws.runs_dir.glob("*/manifest.json"))
