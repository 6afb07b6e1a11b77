"""`data import` into a real gocryptfs workspace (no unsafe flag), then registry lookups on it.

The cipher dir must hold no plaintext trace of the import: no file name, no caption, no canary.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from entrypoint.cli import main
from tests.unit.secure_trainer.privacy.test_sanitize_samples import CANARIES, make_full_jpeg

pytestmark = [pytest.mark.integration, pytest.mark.root]
PASSPHRASE = b"integration-test-passphrase-0001"


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A freshly initialised gocryptfs cipher dir mounted on a plaintext view; unmounted after."""
    cipher, mnt = tmp_path / "cipher", tmp_path / "mnt"
    cipher.mkdir()
    mnt.mkdir()
    # SECURITY: the passphrase goes through stdin, as in entrypoint/workspace/gocryptfs.py.
    subprocess.run(["gocryptfs", "-init", "-q", str(cipher)], input=PASSPHRASE, check=True,
                   timeout=60, capture_output=True)
    subprocess.run(["gocryptfs", "-q", str(cipher), str(mnt)], input=PASSPHRASE, check=True,
                   timeout=60, capture_output=True)
    try:
        yield cipher, mnt
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False, timeout=60,
                       capture_output=True)


def test_import_into_mounted_workspace(mounted: tuple[Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Import succeeds without --unsafe-plaintext-dest; cipher dir holds nothing readable;
    the registry (sqlite on FUSE) answers a subject lookup."""
    cipher, mnt = mounted
    src = tmp_path / "src"
    sub = src / "7_Jane Canary"
    sub.mkdir(parents=True)
    make_full_jpeg(sub / "IMG_CANARY.jpg")
    (sub / "IMG_CANARY.txt").write_text("CAPTION-CANARY portrait")
    Image.new("RGB", (16, 16), (3, 4, 5)).save(sub / "other.png")
    (src / "subjects.csv").write_text("path,subject\n7_Jane Canary/IMG_CANARY.jpg,subj-9\n")

    code = main(["data", "import", str(src), "--workspace", str(mnt), "--name", "set1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["images_written"] == 2
    assert "warning" not in err  # no plaintext warning: the mount was recognised
    assert len(list((mnt / "datasets" / "set1").rglob("*.png"))) == 2

    needles = (*CANARIES, b"CANARY", b"Jane", b"IMG_", b"subj-9", b"set1", b"datasets")
    for path in cipher.rglob("*"):
        assert not any(n.decode() in path.name for n in needles), "plaintext name in cipher dir"
        if path.is_file():
            raw = path.read_bytes()
            assert not any(n in raw for n in needles), "plaintext bytes in cipher dir"

    code = main(["registry", "find", "--subject", "subj-9", "--workspace", str(mnt), "--json"])
    plan = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [i["kind"] for i in plan["items"]] == ["dataset_image", "caption"]
