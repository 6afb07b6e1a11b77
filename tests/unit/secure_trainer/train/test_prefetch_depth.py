"""When the training loop decodes ahead: only for per-step image decoding (no latent cache, no
DP sampler or batch runner), bounded, and never with `--max_data_loader_n_workers 0`."""

from __future__ import annotations

from pathlib import Path

from secure_trainer.data.latent_cache import LatentCache
from secure_trainer.settings import TrainSettings
from secure_trainer.train.loop import PREFETCH_DEPTH, prefetch_depth


def _settings(workers: int | None = None) -> TrainSettings:
    extra = {} if workers is None else {"max_data_loader_n_workers": workers}
    return TrainSettings(pretrained_model_name_or_path=Path("m"), datasets=(),
                         output_dir=Path("o"), **extra)


def test_on_by_default_and_bounded() -> None:
    assert prefetch_depth(_settings(), sampler=None, run_batch=None, cache=None) == PREFETCH_DEPTH
    assert prefetch_depth(_settings(64), sampler=None, run_batch=None, cache=None) == PREFETCH_DEPTH
    assert prefetch_depth(_settings(1), sampler=None, run_batch=None, cache=None) == 1


def test_off_when_asked_or_when_nothing_is_decoded_per_step() -> None:
    assert prefetch_depth(_settings(0), sampler=None, run_batch=None, cache=None) == 0
    assert prefetch_depth(_settings(), sampler=None, run_batch=None, cache=LatentCache()) == 0
    assert prefetch_depth(_settings(), sampler=lambda _e: [], run_batch=None, cache=None) == 0
    assert prefetch_depth(_settings(), sampler=None, run_batch=lambda *_a: 0.0, cache=None) == 0
