"""Root never follows what the trainer made: a LoRA that is a symlink (to the cipher dir's
gocryptfs.conf) fails the seal without touching its target; the trainer cannot plant a
manifest, replace out/ or write into the run dir; what it left in out/ becomes root's and
read-only before sealing. Real OpenBao, gocryptfs, uid switch.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from entrypoint.errors import TrainingError
from tests.adversarial.hostile import FAKE_LORA, TRAINER_IDS, HostileTrainer, lifecycle
from tests.integration.run_support import RunCase, app_events, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture
def case(dev_vault: Any, tmp_path: Path, tiny_model: Any, tiny_dataset: Path) -> RunCase:
    """A prepared workspace (model and dataset imported)."""
    return prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_symlinked_lora_fails_the_seal_and_leaves_its_target(case: RunCase) -> None:
    conf = case.cipher / "gocryptfs.conf"
    before = _digest(conf)
    trainer = HostileTrainer(f'ln -s {conf} "$OUT/$NAME.safetensors"\n')
    life = lifecycle(case, trainer)
    with pytest.raises(TrainingError) as info:
        life.execute()
    assert info.value.exit_code == 7 and "not a regular file" in info.value.message
    assert _digest(conf) == before
    assert not case.fs.is_mounted(case.mnt)
    with case.opened() as ws:  # the workspace still opens: gocryptfs.conf is intact
        records = [e for e in app_events(ws) if e["fields"].get("run_id") == life.run_id]
        events = [e["event"] for e in records]
        assert "sealed" not in events and "teardown" in events
        # The attempt is on the record: the run's failure, by type and exit code (no path).
        failed = [e["fields"] for e in records if e["event"] == "run_failed"]
        assert failed and failed[0]["error"] == "TrainingError" and failed[0]["exit_code"] == 7
        assert not (ws.runs_dir / life.run_id / "manifest.json").exists()


def test_trainer_cannot_touch_the_run_dir_and_loses_out_after_exit(case: RunCase) -> None:
    conf = case.cipher / "gocryptfs.conf"
    before = _digest(conf)
    script = (
        'RUN=$(dirname "$OUT")\n'
        f'probe plant-manifest "ln -s {conf} $RUN/manifest.json"\n'
        'probe replace-out "mv $OUT $RUN/out2 || rm -rf $OUT"\n'
        'probe list-run-dir "ls $RUN"\n'
        'probe write-outside-out "touch $RUN/extra"\n'
        'probe write-other-runs "mkdir runs/evil"\n'
        'mkdir "$OUT/sub" && echo state > "$OUT/sub/state.bin"\n'
        f'ln -s {conf} "$OUT/link"\n'
        + FAKE_LORA)
    trainer = HostileTrainer(script)
    life = lifecycle(case, trainer)
    lora = life.execute()
    assert set(trainer.verdicts().values()) == {"DENIED"}, trainer.verdicts()
    assert _digest(conf) == before
    with case.opened() as ws:
        run_dir = ws.runs_dir / life.run_id
        assert lora == case.mnt / "runs" / life.run_id / "lora.safetensors"
        assert (run_dir / "lora.safetensors").read_bytes() == b"not-a-real-lora"
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700 and run_dir.stat().st_uid == 0
        out = run_dir / "out"
        for p in [out, *out.rglob("*")]:
            st = p.lstat()
            assert (st.st_uid, st.st_gid) == (0, 0), p.name
            if not stat.S_ISLNK(st.st_mode):
                assert stat.S_IMODE(st.st_mode) & 0o222 == 0, p.name
        assert os.readlink(out / "link") == str(conf)  # kept as a link, never followed
        assert stat.S_IMODE((ws.runs_dir).stat().st_mode) == 0o711
        assert ws.runs_dir.stat().st_uid == 0 and TRAINER_IDS[0] != 0
