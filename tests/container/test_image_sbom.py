"""The whole-image SBOM the build attaches (scripts/sbom.sh) and its check in `make scan`.

The built image carries a CycloneDX SBOM whose sha256 is its label, which names the image it
describes (the same layers minus the SBOM's), and which lists exactly the image's dpkg packages
and venv distributions, the venv ones with the lock's wheel sha256. `scripts/scan.sh` passes it;
an image derived from it with one extra Python distribution, or with an edited SBOM file, fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supply.sbom import components, venv_installed
from tests.container.support import REPO_ROOT, docker

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.root]

SBOM_PATH = "/usr/share/secure-trainer/sbom.cdx.json"


def _label(image: str, name: str) -> str:
    out = docker("image", "inspect", "-f", f'{{{{index .Config.Labels "io.secure-trainer.sbom.{name}"}}}}',
                 image)
    return out.stdout.decode().strip()


def _scan(image: str, out: Path) -> tuple[int, str]:
    """scripts/scan.sh's image checks (lint skipped) on `image`; exit code and sbom row/report."""
    env = {**os.environ, "SCAN_IMAGE": image, "SCAN_OUT": str(out), "SCAN_SKIP_LINT": "1",
           "SCAN_OSV_DIR": ""}
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "scan.sh")], env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    report = (out / "sbom.txt").read_text() if (out / "sbom.txt").exists() else ""
    rows = [line for line in proc.stdout.splitlines() if line.startswith("sbom ")]
    return proc.returncode, "\n".join(rows) + "\n" + report + proc.stderr[-2000:]


def _derived(image: str, run: str) -> Iterator[str]:
    tag = f"st-test-sbom:{uuid.uuid4().hex[:8]}"
    dockerfile = f"FROM {image}\nUSER 0:0\nRUN [\"/opt/venv/bin/python\", \"-c\", \"{run}\"]\nUSER 10001:10001\n"
    docker("build", "-q", "-t", tag, "-", stdin=dockerfile.encode(), timeout=300)
    try:
        yield tag
    finally:
        docker("rmi", "-f", tag, check=False)


@pytest.fixture(scope="module")
def sbom(image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SBOM file copied out of the image (never started)."""
    dest = tmp_path_factory.mktemp("sbom") / "sbom.cdx.json"
    cid = docker("create", "--network", "none", image).stdout.decode().strip()
    try:
        docker("cp", f"{cid}:{SBOM_PATH}", str(dest))
    finally:
        docker("rm", cid, check=False)
    return dest


@pytest.fixture(scope="module")
def extra_dist(image: str) -> Iterator[str]:
    """The image plus a distribution pip never installed (a dist-info in the venv)."""
    site = "/opt/venv/lib/python3.11/site-packages/evil_pkg-1.0.dist-info"
    run = (f"import os; os.makedirs('{site}'); "
           f"open('{site}/METADATA', 'w').write('Metadata-Version: 2.1\\\\nName: evil-pkg\\\\nVersion: 1.0\\\\n')")
    yield from _derived(image, run)


@pytest.fixture(scope="module")
def edited_sbom(image: str) -> Iterator[str]:
    """The image with its SBOM file rewritten (one space appended): the label no longer matches."""
    yield from _derived(image, f"open('{SBOM_PATH}', 'a').write(' ')")


def test_sbom_matches_label_and_covers_debs_and_venv(image: str, sbom: Path) -> None:
    assert hashlib.sha256(sbom.read_bytes()).hexdigest() == _label(image, "sha256")
    described = _label(image, "image")
    layers = json.loads(docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", image).stdout)
    below = json.loads(docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", described).stdout)
    assert layers[:-1] == below and len(layers) == len(below) + 1
    comps = components(json.loads(sbom.read_bytes()))
    debs = {c.name: c.version for c in comps if c.kind == "deb"}
    pys = {c.name: c for c in comps if c.kind == "pypi"}
    status = docker("run", "--rm", "--network", "none", "--entrypoint", "dpkg-query", image,
                    "-W", "-f", "${Package} ${Version}\\n").stdout.decode().split("\n")
    assert debs == dict(line.split(" ", 1) for line in status if line)
    assert {"python3", "gocryptfs", "fuse3", "auditd", "tini"} <= set(debs)
    freeze = docker("run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python",
                    image, "-c", "import importlib.metadata as m; "
                    "print('\\n'.join(f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions()))"
                    ).stdout.decode().splitlines()
    assert len(pys) == len(venv_installed(freeze))
    lock = (REPO_ROOT / "requirements/lock-cpu.txt").read_text()
    torch = pys["torch"]
    assert torch.version.endswith("+cpu") and torch.sha256 and f"sha256:{torch.sha256}" in lock
    assert "tensorboard" not in pys and "grpcio" not in pys and "werkzeug" not in pys


def test_scan_passes_the_built_image(image: str, tmp_path: Path) -> None:
    rc, out = _scan(image, tmp_path)
    assert "sbom       ok" in out and "0 mismatch(es)" in out, out
    assert rc == 0, out


def test_scan_fails_an_image_with_an_undeclared_distribution(extra_dist: str, tmp_path: Path) -> None:
    rc, out = _scan(extra_dist, tmp_path)
    assert rc == 1 and "sbom       FAIL" in out, out
    assert "MISMATCH pypi evil-pkg: in the image (1.0), not in the SBOM" in out
    assert "MISMATCH the image is not the described image plus the SBOM layer" in out


def test_scan_fails_an_edited_sbom(edited_sbom: str, tmp_path: Path) -> None:
    rc, out = _scan(edited_sbom, tmp_path)
    assert rc == 1 and "MISMATCH label digest" in out, out
