"""Poisson sampling of DP-SGD logical batches over the distinct images of a Kohya dataset.

The privacy unit is one image, so every image is one record however many Kohya repeats it
has: repeats are folded into its inclusion probability q_i = min(1, r_i / T), T = the run's
steps per epoch (Kohya's bucketed batch count). In expectation an image is then used r_i times
per epoch, as in Kohya, but is never duplicated inside a step, and the accountant charges the
largest q_i. Buckets only decide an image's resolution: a logical batch may mix buckets
because its examples are forwarded one at a time. Inclusion is drawn from the OS CSPRNG, not
the run seed: amplification by subsampling assumes the batch composition is secret.
Never logs; holds no paths.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from secure_trainer.data.dataset import Batch


@dataclass(frozen=True)
class PoissonBatch:
    """One logical DP-SGD batch: single-example `dataset.Batch`es (possibly none)."""

    examples: tuple[Batch, ...]


def inclusion_rates(dataset: Any, steps_per_epoch: int) -> list[float]:
    """q_i = min(1, repeats_i / steps_per_epoch) for every record of `dataset` (reg included)."""
    steps = max(1, steps_per_epoch)
    return [min(1.0, record.repeats / steps) for record in dataset.records]


def private_image_count(dataset: Any) -> int:
    """N: distinct training images (regularization images are public class images)."""
    return sum(1 for record in dataset.records if not record.is_reg)


class PoissonSampler:
    """Per-epoch iterator of `PoissonBatch`es: each record joins each step with its own q_i."""

    def __init__(self, dataset: Any, rates: list[float], steps_per_epoch: int,
                 rng: random.Random | None = None) -> None:
        """`rng` defaults to random.SystemRandom (tests may pass a seeded one)."""
        self._dataset = dataset
        self._rates = rates
        self._steps = steps_per_epoch
        self._rng = rng or random.SystemRandom()

    def __call__(self, epoch: int) -> Iterator[PoissonBatch]:
        """The epoch's `steps_per_epoch` logical batches. Captions and flips use the dataset's
        own per-epoch streams (they are augmentation, not privacy-relevant)."""
        ds = self._dataset
        caption_rng = random.Random(f"dp-caption/{ds.seed}/{epoch}")
        flip_rng = random.Random(f"dp-flip/{ds.seed}/{epoch}")
        first_step = (epoch - 1) * self._steps
        for number in range(self._steps):
            chosen = [i for i, q in enumerate(self._rates) if self._rng.random() < q]
            yield PoissonBatch(examples=tuple(
                self._example(i, epoch, first_step + number, caption_rng, flip_rng)
                for i in chosen))

    def _example(self, index: int, epoch: int, step: int, caption_rng: random.Random,
                 flip_rng: random.Random) -> Batch:
        ds = self._dataset
        record = ds.records[index]
        subset = ds.datasets[record.dataset].subsets[record.subset]
        return Batch(
            indices=[index], images=None,
            captions=[ds.caption(index, epoch, caption_rng, step=step)],
            loss_weights=torch.tensor([record.loss_weight], dtype=torch.float32),
            bucket=record.bucket,
            flipped=[bool(subset.flip_aug and flip_rng.random() < 0.5)],
            network_multiplier=ds.datasets[record.dataset].network_multiplier,
            dataset=record.dataset)
