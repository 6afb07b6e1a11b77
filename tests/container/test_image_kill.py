"""`docker kill` during training, then the next start recovers (state dir on a volume).

SIGKILL reaches the whole container: no teardown runs. The next container, with the same
cipher dir and the same state volume (`-v NAME:/state`, the image's default state dir), must find the dead run's marker stale — its PID is
usually the new supervisor's own PID, since both are the same child of tini in a fresh PID
namespace — recover, record `recovered_stale_run`, and train to a sealed LoRA.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.container.support import (
    TRAIN_ARGS,
    ContainerCase,
    docker,
    run_container,
    wait_for_log,
)

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.root]

STATE = "/state"


def test_docker_kill_then_next_start_recovers(image: str, container_case: ContainerCase) -> None:
    volume = f"st-test-state-{uuid.uuid4().hex[:10]}"
    docker("volume", "create", volume)
    # The image's default ST_STATE_DIR is /state (a VOLUME): only the named volume is given.
    flags = [*container_case.flags(), "-v", f"{volume}:{STATE}"]
    name = f"st-test-{uuid.uuid4().hex[:10]}"
    try:
        docker("run", "-d", "--name", name, *flags, image, "run", "--policy", "dev",
               *TRAIN_ARGS, "--max_train_steps", "400")
        assert wait_for_log(name, "[train]", 240), docker("logs", name, check=False).stderr[-2000:]
        docker("kill", name)
        docker("rm", "-f", name, check=False)
        result = run_container(image, flags, ["run", "--policy", "dev", *TRAIN_ARGS,
                                              "--max_train_steps", "2"])
        assert result.rc == 0, (result.stdout + result.stderr)[-4000:]
        run_id = result.stdout.split("done: run ", 1)[1].split(";", 1)[0]
        with container_case.run.opened() as ws:
            records = [json.loads(line) for line in
                       (ws.audit_dir / "app.jsonl").read_text().splitlines() if line.strip()]
            assert (ws.runs_dir / run_id / "lora.safetensors").is_file()
        mine = [r["event"] for r in records if r["fields"].get("run_id") == run_id]
        assert "recovered_stale_run" in mine, mine
        assert "sealed" in mine
    finally:
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", "-f", volume, check=False)
