"""Shared helpers of the trainer integration tests: a small dataset config and base flags.

The synthetic dataset's folders are used with num_repeats 1 through a `--dataset_config`, so an
epoch is 12 images = 3 batches of 4 at 64 px on the tiny model (seconds per run, not minutes).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def write_dataset_config(dataset: Path, out: Path, *, flip_aug: bool = False,
                         batch_size: int = 4) -> Path:
    """A dataset TOML over `10_subject` and `5_style` with one repeat each."""
    lines = ["[general]", 'caption_extension = ".txt"']
    if flip_aug:
        lines.append("flip_aug = true")
    lines += ["[[datasets]]", "resolution = 64", f"batch_size = {batch_size}"]
    for sub in ("10_subject", "5_style"):
        lines += ["  [[datasets.subsets]]", f'  image_dir = "{dataset / sub}"', "  num_repeats = 1"]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def base_args(model_dir: Path, dataset_config: Path, output_dir: Path, *extra: str) -> list[str]:
    """Kohya flags for a fast, seeded tiny-model run."""
    return ["--pretrained_model_name_or_path", str(model_dir), "--dataset_config", str(dataset_config),
            "--output_dir", str(output_dir), "--seed", "7", "--network_dim", "8",
            "--network_alpha", "8", *extra]


def private_strings(dataset: Path) -> set[str]:
    """Folder names, file names/stems and caption words (≥ 4 letters) of the dataset."""
    found: set[str] = set()
    for sub in dataset.iterdir():
        found.add(sub.name)
        for f in sub.iterdir():
            found.update({f.name, f.stem})
            if f.suffix == ".txt":
                found.update(w for w in re.findall(r"[a-z]+", f.read_text(encoding="utf-8"))
                             if len(w) >= 4)
    return found


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: one torch thread (the CI box is shared), no secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run `secure-trainer` as a real subprocess (argv list, no shell, timeout)."""
    return subprocess.run([str(BIN / "secure-trainer"), *args], capture_output=True, text=True,
                          timeout=timeout, env=cli_env(), cwd=REPO_ROOT, check=False)
