"""The leak probe catches what it must: a caption or image bytes planted where a run could write."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.integration.leakprobe import (
    LeakProbe,
    dataset_needles,
    scan_tree,
    standard_roots,
    unique_dataset,
)

pytestmark = [pytest.mark.integration]


@pytest.fixture()
def salted(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A copy of the synthetic dataset unique to this test."""
    return unique_dataset(tiny_dataset, tmp_path / "data", uuid.uuid4().hex[:10])


def test_probe_catches_a_planted_caption_and_image_bytes(salted: Path, tmp_path: Path,
                                                        tiny_dataset: Path) -> None:
    needles = dataset_needles(salted, tiny_dataset)
    assert sum(n.label.startswith("caption") for n in needles) == 11
    assert sum(" file@" in n.label for n in needles) >= 12
    assert sum(" pixels@" in n.label for n in needles) >= 12
    caption = min(salted.rglob("*.txt")).read_text().strip()
    image = min(salted.rglob("*.png")).read_bytes()
    probe = LeakProbe(standard_roots(tmp_path), needles, exclude=[salted])
    probe.start()
    planted: list[str] = []
    try:
        for directory, payload in (("/tmp", f"log: {caption}\n".encode()),
                                   ("/dev/shm", b"\0" * 100 + image + b"\0")):
            fd, name = tempfile.mkstemp(prefix="st-leakprobe-", dir=directory)
            os.write(fd, payload)
            os.close(fd)
            planted.append(name)
        (tmp_path / "harmless.bin").write_bytes(os.urandom(4096))
        report = probe.finish()
    finally:
        for name in planted:
            os.unlink(name)
    hit_files = {str(h.path) for h in report.hits}
    assert hit_files == set(planted), report.hits
    assert any(h.label.startswith("caption") for h in report.hits)
    assert any(" file@" in h.label for h in report.hits)
    assert report.changed >= 3


def test_scan_tree_finds_pixels_in_raw_bytes(salted: Path, tmp_path: Path,
                                             tiny_dataset: Path) -> None:
    """Decoded pixels written to a file (a latent/pixel cache) are caught too."""
    from PIL import Image

    needles = dataset_needles(salted, tiny_dataset)
    fake_cipher = tmp_path / "cipher"
    fake_cipher.mkdir()
    assert scan_tree(fake_cipher, needles).hits == []
    with Image.open(min(salted.rglob("*.jpg"))) as img:
        (fake_cipher / "cache.raw").write_bytes(img.convert("RGB").tobytes())
    report = scan_tree(fake_cipher, needles)
    assert report.scanned == 1 and any(" pixels@" in h.label for h in report.hits)
