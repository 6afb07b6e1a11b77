"""The image ships Debian's tcmalloc where the trainer's allocator check accepts it: root-owned,
unwritable, reachable by the training uid (entrypoint/allocator.py), so `run`'s CPU child
preloads it."""

from __future__ import annotations

import pytest

from tests.container.support import docker

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.root]

_PROBE = ("from entrypoint.allocator import preload_library; "
          "print(preload_library({}, 10001, gpu_present=False))")


def test_image_trainer_would_preload_tcmalloc(image: str) -> None:
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python",
                 image, "-c", _PROBE).stdout.decode().strip()
    assert out.startswith("/usr/lib/") and "/libtcmalloc_minimal.so.4" in out, out
