"""A double-forked survivor of the trainer (its own session, so PR_SET_PDEATHSIG never reaches
it) is found by its uid after the trainer exits, killed before the unmount, and the run fails
closed without sealing. Real OpenBao, gocryptfs, uid switch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from entrypoint.errors import TrainingError
from entrypoint.run.containment import processes_of
from tests.adversarial.hostile import FAKE_LORA, TRAINER_IDS, HostileTrainer, lifecycle
from tests.integration.run_support import RunCase, app_events, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture
def case(dev_vault: Any, tmp_path: Path, tiny_model: Any, tiny_dataset: Path) -> RunCase:
    """A prepared workspace (model and dataset imported)."""
    return prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)


def test_double_forked_survivor_is_killed_and_the_run_is_not_sealed(case: RunCase) -> None:
    # The survivor sits in the workspace (its cwd) and holds a dataset file open.
    script = ('setsid sh -c "exec 3<datasets/demo/$(ls datasets/demo | head -n 1)/$(ls '
              'datasets/demo/$(ls datasets/demo | head -n 1) | head -n 1); sleep 300" '
              '</dev/null >/dev/null 2>&1 &\n'
              'sleep 0.5\n' + FAKE_LORA)
    life = lifecycle(case, HostileTrainer(script))
    with pytest.raises(TrainingError) as info:
        life.execute()
    assert info.value.exit_code == 7 and "outlived" in info.value.message
    assert processes_of(TRAINER_IDS[0]) == []
    assert not case.fs.is_mounted(case.mnt)
    with case.opened() as ws:
        events = [{"event": e["event"], **e["fields"]} for e in app_events(ws)]
        killed = [e for e in events if e["event"] == "trainer_survivors_killed"]
        assert killed and killed[0]["when"] == "after_train" and killed[0]["processes"] >= 1
        assert "sealed" not in {e["event"] for e in events}
