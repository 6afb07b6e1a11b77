"""The Kohya DreamBooth-style dataset: records, repeats, reg balancing, buckets, seeded batches.

Images are opened lazily, one batch at a time; captions are read once at construction.
SECURITY: never logs; warnings go through the `warn` callback and carry counts only — never a
path, file name or caption. Records hold no paths (their repr is safe to print).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from secure_trainer.data.buckets import BucketPlanner, Size, sdxl_time_ids
from secure_trainer.data.caption_csv import csv_caption, read_caption_csv
from secure_trainer.data.captions import (
    CaptionContext,
    find_caption_file,
    process_caption,
    read_caption,
)
from secure_trainer.data.image_io import (
    decode_training_image,
    list_images,
    probe_size,
    to_training_tensor,
)
from secure_trainer.errors import DataRejected
from secure_trainer.settings import DatasetSettings, SubsetSettings


@dataclass(frozen=True)
class ImageRecord:
    """One image file as the trainer sees it (no path: safe to print)."""

    index: int
    dataset: int
    subset: int
    bucket: Size
    resized: Size
    original_size: Size
    is_reg: bool
    repeats: int
    loss_weight: float
    ar_error: float


@dataclass
class Batch:
    """One step's worth of samples from a single bucket of a single dataset."""

    indices: list[int]
    images: torch.Tensor | None
    captions: list[str]
    loss_weights: torch.Tensor
    bucket: Size
    flipped: list[bool]
    network_multiplier: float
    dataset: int = 0
    crop_top_left: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Scanned:
    path: Path
    caption: str  # raw caption (file, else class tokens, else "")
    size: Size
    subset: int


def _scan_subset(
    subset: SubsetSettings, subset_idx: int, first_index: int, missing_caption: list[int]
) -> list[_Scanned]:
    if not subset.image_dir.is_dir():
        raise DataRejected("training data folder not found (check train_data_dir / image_dir)")
    scanned: list[_Scanned] = []
    table = read_caption_csv(subset.caption_csv) if subset.caption_csv is not None else None
    for path in list_images(subset.image_dir):
        cap_file = None if table is not None else find_caption_file(path, subset.caption_extension)
        listed = csv_caption(table, path, subset.image_dir) if table is not None else None
        if listed is not None:
            caption = listed
        elif cap_file is not None:
            caption = read_caption(cap_file, enable_wildcard=subset.enable_wildcard)
        else:
            caption = subset.class_tokens or ""
            if not subset.class_tokens:
                missing_caption[0] += 1
        size = probe_size(path, first_index + len(scanned))
        scanned.append(_Scanned(path=path, caption=caption, size=size, subset=subset_idx))
    return scanned


class KohyaDataset:
    """All `[[datasets]]` of a run, bucketed, with sd-scripts' epoch semantics.

    Epochs count from 1. Batches never mix buckets or datasets and are deterministic in
    (seed, epoch); every image appears `repeats` times per epoch.
    """

    def __init__(
        self,
        datasets: tuple[DatasetSettings, ...],
        *,
        seed: int,
        prior_loss_weight: float,
        caption_transform_enabled: bool = True,
        max_train_steps: int = 1600,
        gradient_accumulation_steps: int = 1,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        """Scan every subset (header sizes, captions), balance reg images, assign buckets.

        Raises DataRejected for a missing folder, unreadable image, empty/non-UTF-8 caption file
        or when no training image is found; ConfigError for bad bucket settings.
        """
        self.datasets = datasets
        self.seed = seed
        self.prior_loss_weight = prior_loss_weight
        self.caption_transform_enabled = caption_transform_enabled
        self.max_train_steps = max_train_steps
        self.gradient_accumulation_steps = max(1, gradient_accumulation_steps)
        self._warn = warn or (lambda _msg: None)
        self.records: list[ImageRecord] = []
        self._paths: list[Path] = []
        self._captions: list[str] = []
        self._bucket_samples: list[dict[Size, list[int]]] = []
        self.num_train_images = 0
        self.num_reg_images = 0
        missing_caption = [0]
        for ds_idx, ds in enumerate(datasets):
            self._add_dataset(ds_idx, ds, missing_caption)
        if self.num_train_images == 0:
            raise DataRejected(
                "no training images found (folders must be named <repeats>_<name> and hold "
                ".png/.jpg/.jpeg/.webp/.bmp files)"
            )
        if missing_caption[0]:
            self._warn(
                f"{missing_caption[0]} image(s) have no caption file and no class_tokens; "
                "they are trained with an empty caption"
            )
        self.buckets: list[Size] = sorted({b for per_ds in self._bucket_samples for b in per_ds})

    def _add_dataset(self, ds_idx: int, ds: DatasetSettings, missing_caption: list[int]) -> None:
        planner = BucketPlanner(
            ds.resolution,
            enable_bucket=ds.enable_bucket,
            min_reso=ds.min_bucket_reso,
            max_reso=ds.max_bucket_reso,
            steps=ds.bucket_reso_steps,
            no_upscale=ds.bucket_no_upscale,
        )
        train: list[_Scanned] = []
        reg: list[_Scanned] = []
        for sub_idx, subset in enumerate(ds.subsets):
            found = _scan_subset(
                subset, sub_idx, len(self.records) + len(train) + len(reg), missing_caption
            )
            if not found:
                self._warn(f"dataset {ds_idx} subset {sub_idx} has no images; skipped")
            (reg if subset.is_reg else train).extend(found)
        repeats: list[tuple[_Scanned, int]] = [(s, ds.subsets[s.subset].num_repeats) for s in train]
        num_train = sum(r for _, r in repeats)
        repeats += self._balance_reg(reg, ds, num_train)
        self.num_train_images += num_train
        self.num_reg_images += len(reg)

        samples: dict[Size, list[int]] = {}
        for scanned, reps in repeats:
            choice = planner.select(*scanned.size)
            subset = ds.subsets[scanned.subset]
            index = len(self.records)
            self.records.append(
                ImageRecord(
                    index=index,
                    dataset=ds_idx,
                    subset=scanned.subset,
                    bucket=choice.bucket,
                    resized=choice.resized,
                    original_size=scanned.size,
                    is_reg=subset.is_reg,
                    repeats=reps,
                    loss_weight=self.prior_loss_weight if subset.is_reg else 1.0,
                    ar_error=choice.ar_error,
                )
            )
            self._paths.append(scanned.path)
            self._captions.append(scanned.caption)
            samples.setdefault(choice.bucket, []).extend([index] * reps)
        self._bucket_samples.append(samples)

    def _balance_reg(
        self, reg: list[_Scanned], ds: DatasetSettings, num_train: int
    ) -> list[tuple[_Scanned, int]]:
        """sd-scripts' rule: register reg images (own repeats) until the train count is reached,
        then add one repeat per image round-robin; images never reached are unused."""
        used: list[_Scanned] = []
        reps: list[int] = []
        total = 0
        first_pass = True
        while reg and total < num_train:
            for i, scanned in enumerate(reg):
                if first_pass:
                    used.append(scanned)
                    reps.append(ds.subsets[scanned.subset].num_repeats)
                    total += reps[-1]
                else:
                    reps[i] += 1
                    total += 1
                if total >= num_train:
                    break
            first_pass = False
        if len(used) < len(reg):
            self._warn(
                f"{len(reg) - len(used)} regularization image(s) are not used (more reg "
                "than training samples)"
            )
        return list(zip(used, reps, strict=True))

    # -- epoch structure ------------------------------------------------------------------

    def batches_per_epoch(self) -> int:
        """Σ over datasets and buckets of ceil(samples_in_bucket / batch_size)."""
        return sum(
            math.ceil(len(samples) / self.datasets[ds_idx].batch_size)
            for ds_idx, per_ds in enumerate(self._bucket_samples)
            for samples in per_ds.values()
        )

    def _epoch_plan(self, epoch: int) -> list[tuple[int, Size, list[int]]]:
        rng = random.Random(self.seed + epoch)
        plan: list[tuple[int, Size, list[int]]] = []
        for ds_idx, per_ds in enumerate(self._bucket_samples):
            size = self.datasets[ds_idx].batch_size
            for bucket in sorted(per_ds):
                samples = list(per_ds[bucket])
                rng.shuffle(samples)
                plan.extend(
                    (ds_idx, bucket, samples[i : i + size]) for i in range(0, len(samples), size)
                )
        rng.shuffle(plan)
        return plan

    def batches(
        self, epoch: int, *, load_images: bool = True, first_step: int = 0
    ) -> Iterator[Batch]:
        """Yield the epoch's batches in a (seed, epoch)-deterministic order, loading images lazily.

        `first_step` is the optimizer step at the epoch start (token warmup); batch i is step
        first_step + i // gradient_accumulation_steps. Captions and flips do not depend on
        `load_images`. Raises DataRejected when an image cannot be decoded.
        """
        if epoch < 1:
            raise ValueError("epochs count from 1")
        caption_rng = random.Random(f"caption/{self.seed}/{epoch}")
        flip_rng = random.Random(f"flip/{self.seed}/{epoch}")
        aug_rng = random.Random(f"augment/{self.seed}/{epoch}")
        for number, (ds_idx, bucket, indices) in enumerate(self._epoch_plan(epoch)):
            step = first_step + number // self.gradient_accumulation_steps
            captions = [self.caption(i, epoch, caption_rng, step=step) for i in indices]
            flipped = [self._subset(i).flip_aug and flip_rng.random() < 0.5 for i in indices]
            images = None
            if load_images:
                pairs = zip(indices, flipped, strict=True)
                images = torch.stack([self.load_image(i, flip=f, rng=aug_rng) for i, f in pairs])
            yield Batch(
                indices=list(indices),
                images=images,
                captions=captions,
                loss_weights=torch.tensor(
                    [self.records[i].loss_weight for i in indices], dtype=torch.float32
                ),
                bucket=bucket,
                flipped=flipped,
                network_multiplier=self.datasets[ds_idx].network_multiplier,
                dataset=ds_idx,
            )

    # -- per-sample access ----------------------------------------------------------------

    def _subset(self, index: int) -> SubsetSettings:
        record = self.records[index]
        return self.datasets[record.dataset].subsets[record.subset]

    def load_image(
        self, index: int, *, flip: bool = False, rng: random.Random | None = None
    ) -> torch.Tensor:
        """Image `index` cover-resized and cropped to its bucket: [3,H,W] float32 in [-1,1].

        With `rng`, subsets with random_crop / color_aug get a random crop / colour jitter;
        without it the crop is centred and colours are untouched. Raises DataRejected.
        """
        return to_training_tensor(self.decode_image(index, flip=flip, rng=rng))

    def decode_image(
        self, index: int, *, flip: bool = False, rng: random.Random | None = None
    ) -> np.ndarray:
        """`load_image` before the tensor: RGB uint8 HWC (no torch call; the prefetch thread's
        part). Raises DataRejected."""
        record = self.records[index]
        subset = self._subset(index)
        return decode_training_image(
            self._paths[index],
            index,
            expected_size=record.original_size,
            resized=record.resized,
            bucket=record.bucket,
            interpolation=subset.resize_interpolation,
            flip=flip,
            crop_rng=rng if subset.random_crop else None,
            color_rng=rng if subset.color_aug else None,
        )

    def caption(self, index: int, epoch: int, rng: random.Random, *, step: int = 0) -> str:
        """The caption of image `index` for this draw (§2 pipeline; random parts from `rng`)."""
        ctx = CaptionContext(epoch=epoch, step=step, max_train_steps=self.max_train_steps)
        return process_caption(
            self._captions[index],
            self._subset(index),
            ctx,
            rng,
            transforms=self.caption_transform_enabled,
        )

    def size_conditioning(self, indices: list[int], flipped: list[bool]) -> torch.Tensor:
        """SDXL `time_ids` [B, 6] float32 for a batch: original size, crop offset and target
        (bucket) size of each image as sd-scripts computes them (buckets.sdxl_time_ids)."""
        rows = [sdxl_time_ids(self.records[i].original_size, self.records[i].bucket, flipped=f)
                for i, f in zip(indices, flipped, strict=True)]
        return torch.tensor(rows, dtype=torch.float32)

    def raw_caption(self, index: int) -> str:
        """The stored caption before the pipeline (for PII scans and metadata; never log it)."""
        return self._captions[index]

    def bucket_info(self) -> dict[str, object]:
        """sd-scripts' `ss_bucket_info` shape: per-bucket resolution and count, mean AR error."""
        counts: dict[Size, int] = {}
        for per_ds in self._bucket_samples:
            for bucket, samples in per_ds.items():
                counts[bucket] = counts.get(bucket, 0) + len(samples)
        errors = [abs(r.ar_error) for r in self.records]
        return {
            "buckets": {
                i: {"resolution": list(b), "count": counts[b]} for i, b in enumerate(sorted(counts))
            },
            "mean_img_ar_error": sum(errors) / len(errors) if errors else 0.0,
        }
