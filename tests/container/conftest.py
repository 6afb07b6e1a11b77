"""Container e2e fixtures: a real dockerd, the CPU image built from the local base, a prepared case.

`docker_engine` starts dockerd (scripts/dockerd.sh) when none answers and stops it by PID at the
end; one that was already running is used and left alone. If no engine can start, the tests
FAIL — only `gpu` may skip. `image` runs scripts/build.sh (base + wheelhouse + `docker build`,
all cached under ST_CACHE, keyed on the lock hash), so a fresh clone builds what it needs.
The dev OpenBao runs on the host loopback; containers reach it with `--network host`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.container.support import BUILD_TIMEOUT_S, REPO_ROOT, ContainerCase
from tests.integration.leakprobe import dataset_needles, unique_dataset
from tests.integration.run_support import prepare


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    """A docker engine on the default socket; stopped at the end only if this session started it."""
    out = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "dockerd.sh")],
                         capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        pytest.fail(f"docker engine unavailable: {out.stderr.strip()[-1000:]}", pytrace=False)
    words = out.stdout.split()
    started = int(words[1]) if words and words[0] == "started" else None
    try:
        yield
    finally:
        if started is not None:
            os.kill(started, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    os.kill(started, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)


@pytest.fixture(scope="session")
def image(docker_engine: None) -> str:
    """The CPU image of this working tree (built or taken from the layer cache); its tag."""
    env = {**os.environ, "VARIANT": "cpu", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "build.sh")], env=env,
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                          check=False)
    if proc.returncode != 0:
        pytest.fail(f"image build failed: {proc.stderr[-3000:]}", pytrace=False)
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def container_case(dev_vault: Any, tiny_model: Any, tiny_dataset: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> ContainerCase:
    """Keys init + model and a salted dataset copied into a fresh workspace (owner-only)."""
    root = tmp_path_factory.mktemp("container")
    salt = uuid.uuid4().hex[:10]
    dataset = unique_dataset(tiny_dataset, root / "src-data", salt)
    case = prepare(dev_vault, root / "case", tiny_model, dataset)
    # Owner-only, as `data import` writes them: the run itself must give uid 10001 read access
    # to exactly its model and dataset (entrypoint/workspace/grants.py).
    with case.opened() as ws:
        for top in (ws.models_dir, ws.datasets_dir):
            for path in [top, *top.rglob("*")]:
                path.chmod(0o700 if path.is_dir() else 0o600)
    return ContainerCase(run=case, dataset=dataset,
                         needles=dataset_needles(dataset, reference=tiny_dataset))
