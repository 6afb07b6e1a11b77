"""The on-disk SDXL text-encoder cache: keyed files, reuse, recompute of bad files, no captions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from secure_trainer.data.te_cache import SUFFIX, DiskTextCache, encoders_digest
from secure_trainer.errors import TrainingError

CAPTIONS = ["alice smith at the beach", "bob jones, portrait"]


class Encoder:
    """A deterministic stand-in for the two frozen encoders: counts what it encodes."""

    def __init__(self, scale: float = 1.0) -> None:
        self.calls: list[str] = []
        self.scale = scale

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += texts
        rows = [float(len(t)) * self.scale for t in texts]
        return (torch.tensor(rows).view(-1, 1, 1).expand(-1, 4, 3).clone(),
                torch.tensor(rows).view(-1, 1).expand(-1, 2).clone())


def test_outputs_are_written_once_and_reused_by_the_next_run(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "last-te-cache"
    first, enc = DiskTextCache(folder, "model-a|bf16|cpu|None"), Encoder()
    hidden, pooled = first.get(CAPTIONS + CAPTIONS[:1], enc)
    assert hidden.shape == (3, 4, 3) and pooled.shape == (3, 2) and enc.calls == CAPTIONS
    files = sorted(folder.iterdir())
    assert first.written == 2 and len(files) == 2
    for f in files:
        assert f.suffix == SUFFIX and len(f.stem) == 64
        assert os.stat(f).st_mode & 0o777 == 0o600
        raw = f.read_bytes()
        assert not any(w.encode() in raw for c in CAPTIONS for w in c.replace(",", "").split()
                       if len(w) >= 4)
    # The next run (same context) reads the files and encodes nothing.
    second, enc2 = DiskTextCache(folder, "model-a|bf16|cpu|None"), Encoder(scale=100.0)
    again, _ = second.get(CAPTIONS, enc2)
    assert enc2.calls == [] and second.reused == 2 and torch.equal(again, hidden[:2])


def test_another_model_or_bad_files_are_recomputed(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    DiskTextCache(folder, "model-a").get(CAPTIONS, Encoder())
    other, enc = DiskTextCache(folder, "model-b"), Encoder(scale=2.0)
    other.get(CAPTIONS, enc)
    assert enc.calls == CAPTIONS and other.reused == 0  # different key: never matched
    # A truncated file, and a valid file renamed to another caption's key: both recomputed.
    cache = DiskTextCache(folder, "model-a")
    first, second = (folder / f"{cache.key(c)}{SUFFIX}" for c in CAPTIONS)
    first.write_bytes(first.read_bytes()[:20])
    second.unlink()
    DiskTextCache(folder, "model-a").get(["x"], Encoder())
    os.replace(folder / f"{cache.key('x')}{SUFFIX}", second)
    enc = Encoder(scale=3.0)
    hidden, _ = cache.get(CAPTIONS, enc)
    assert enc.calls == CAPTIONS and cache.reused == 0
    assert float(hidden[0, 0, 0]) == 3.0 * len(CAPTIONS[0])
    assert DiskTextCache(folder, "model-a").get(CAPTIONS, Encoder(5.0))[0].equal(hidden)


def test_a_symlinked_cache_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "last-te-cache").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(TrainingError) as err:
        DiskTextCache(tmp_path / "out" / "last-te-cache", "m")
    assert str(tmp_path) not in str(err.value)


def test_digest_follows_base_weights_and_ignores_lora() -> None:
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert encoders_digest(a) == encoders_digest(b)
    b.register_parameter("lora_A", torch.nn.Parameter(torch.ones(1)))
    assert encoders_digest(a) == encoders_digest(b)
    with torch.no_grad():
        b.weight[0, 0] += 1.0
    assert encoders_digest(a) != encoders_digest(b)
    before = encoders_digest(a)
    assert before != encoders_digest(a.to(torch.bfloat16))  # same values, other precision

