"""Leak bait through a real run: a hostile trainer prints its dataset's relative paths, folder
names (with and without the `<repeats>_` prefix), file stems and captions; none reaches the
run's output.
Real OpenBao, gocryptfs, uid switch.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.hostile import FAKE_LORA, HostileTrainer, lifecycle
from tests.integration.run_support import RunCase, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root]

BAIT_DIR = "10_zqx_jane_doe"
BAIT_STEM = "zqx_passport_scan"


@pytest.fixture
def case(dev_vault: Any, tmp_path: Path, tiny_model: Any, tiny_dataset: Path) -> RunCase:
    """A workspace whose dataset `datasets/bait` holds one subject folder with bait names."""
    run_case = prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)
    with run_case.opened() as ws:
        src = next(p for p in (ws.datasets_dir / "demo").iterdir() if p.name.startswith("10_"))
        dst = ws.datasets_dir / "bait" / BAIT_DIR
        dst.mkdir(parents=True)
        for i, image in enumerate(sorted(src.glob("*.png"))):
            shutil.copy(image, dst / f"{BAIT_STEM}_{i}.png")
            caption = image.with_suffix(".txt")
            if caption.exists():
                shutil.copy(caption, dst / f"{BAIT_STEM}_{i}.txt")
    return run_case


def test_dataset_names_never_reach_the_output(case: RunCase) -> None:
    script = (
        f'for f in datasets/bait/{BAIT_DIR}/*; do echo "reading $f"; done\n'
        f'echo "subject folder {BAIT_DIR} subject zqx_jane_doe"\n'
        f'ls datasets/bait/{BAIT_DIR} | sed "s/^/file: /"\n'
        f'echo "failed on {BAIT_STEM}_0 at $(pwd)/datasets/bait"\n'
        f'cat datasets/bait/{BAIT_DIR}/*.txt\n'
        'echo "still-visible-marker"\n'
        + FAKE_LORA)
    printed: list[str] = []
    trainer = HostileTrainer(script)
    lifecycle(case, trainer, dataset="datasets/bait", echo=printed.append).execute()
    assert any("zqx_passport" in line for line in trainer.lines)  # the bait was printed ...
    text = "\n".join(printed)
    assert "still-visible-marker" in text  # ... the output went through the run's echo ...
    with case.opened() as ws:
        captions = {ln.strip() for f in (ws.datasets_dir / "bait" / BAIT_DIR).glob("*.txt")
                    for ln in f.read_text().splitlines() if len(ln.strip()) >= 8}
    assert captions
    for bait in ("zqx_jane_doe", BAIT_STEM, "datasets/bait", str(case.mnt), str(case.tmp_path),
                 *captions):
        assert bait not in text, bait  # ... and none of it came out
    assert "<name>" in text and "<path>" in text
