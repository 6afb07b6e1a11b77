"""`scripts/inspect_image.py` (part of `make scan`) on the real image and on a deliberately bad one.

The clean image must pass every check; an image derived from it with a stray setuid binary, a
world-writable dir, a token in its env and a shell history must fail exactly those checks.
Also: policies/seccomp.json is what scripts/seccomp_profile.py generates.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.container.support import REPO_ROOT, docker

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.root]

INSPECT = str(REPO_ROOT / "scripts" / "inspect_image.py")
# A fake token with the shape of a Vault service token; it must be flagged, and never printed.
FAKE_TOKEN = "hvs." + "A1b2C3d4" * 4


def _inspect(image: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, INSPECT, image], capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.fixture(scope="module")
def bad_image(image: str) -> Iterator[str]:
    """The image plus a setuid /usr/bin/env, a world-writable /srv, a token env, a history file."""
    tag = f"st-test-bad:{uuid.uuid4().hex[:8]}"
    dockerfile = (f"FROM {image}\nUSER 0:0\nENV API_TOKEN={FAKE_TOKEN}\n"
                  "RUN [\"/opt/venv/bin/python\", \"-c\", \"import os; "
                  "os.chmod('/usr/bin/env', 0o4755); os.chmod('/srv', 0o777); "
                  "open('/root/.bash_history', 'w').write('ls')\"]\nUSER 10001:10001\n")
    docker("build", "-q", "-t", tag, "-", stdin=dockerfile.encode(), timeout=300)
    try:
        yield tag
    finally:
        docker("rmi", "-f", tag, check=False)


def test_clean_image_passes_every_check(image: str) -> None:
    """The built image: user, secrets, setuid allow-list, world-writable, binaries, leftovers."""
    result = _inspect(image)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FINDING" not in result.stdout
    assert result.stdout.count("ok ") >= 8


def test_bad_image_fails_the_matching_checks(bad_image: str) -> None:
    """Each planted defect is reported under its check; the token value never reaches output."""
    result = _inspect(bad_image)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "FINDING  no secrets in env" in out and "API_TOKEN" in out
    assert "unexpected setuid/setgid: /usr/bin/env" in out
    assert "/srv is world-writable" in out
    assert "/root/.bash_history" in out
    assert "ok       user is not root" in out
    assert FAKE_TOKEN not in out + result.stderr


def test_seccomp_profile_is_generated_from_the_script() -> None:
    """policies/seccomp.json matches scripts/seccomp_profile.py (regenerate after editing it)."""
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "seccomp_profile.py"),
                             "--check"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
