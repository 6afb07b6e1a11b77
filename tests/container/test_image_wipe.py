"""The image wipes what it promises: /tmp on a named volume (not a tmpfs) is emptied by a run.

The image sets ST_IN_CONTAINER=1, so a run's teardown wipes /tmp, /var/tmp and the caches. A
tmpfs /tmp would hide a broken wipe (it dies with the container anyway), so this run gets /tmp
on a named volume that outlives the container, with files planted in it beforehand the way a
cache or a crashed earlier process would leave them.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.container.support import TRAIN_ARGS, ContainerCase, docker, run_container
from tests.integration.leakprobe import scan_tree

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.root]

STEPS = "2"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def test_run_wipes_tmp_on_a_named_volume(image: str, container_case: ContainerCase) -> None:
    volume = f"st-test-tmp-{uuid.uuid4().hex[:10]}"
    docker("volume", "create", volume)
    try:
        data = Path(docker("volume", "inspect", "-f", "{{.Mountpoint}}", volume)
                    .stdout.decode().strip())
        # Leftovers a cache or an earlier process could have put there (readable by anyone).
        (data / "hf-cache" / "blobs").mkdir(parents=True)
        (data / "hf-cache" / "blobs" / "leftover.bin").write_bytes(b"cached tensor bytes" * 64)
        (data / "scratch.tmp").write_bytes(b"a decoded image would sit here")
        data.chmod(0o1777)
        flags = [f for f in container_case.flags() if f != "--tmpfs"]
        flags = [f for f in flags if not f.startswith("/tmp:")]  # drop the tmpfs spec
        flags += ["-v", f"{volume}:/tmp"]
        result = run_container(image, flags, ["run", "--policy", "dev", *TRAIN_ARGS,
                                              "--max_train_steps", STEPS])
        assert result.rc == 0, (result.stdout + result.stderr)[-4000:]
        left = _files(data)
        assert "scratch.tmp" not in left and "hf-cache/blobs/leftover.bin" not in left, left
        # Whatever the supervisor keeps there (its state dir) holds none of the run's data.
        report = scan_tree(data, container_case.needles)
        assert report.hits == [], [h.label for h in report.hits]
    finally:
        docker("volume", "rm", "-f", volume, check=False)
