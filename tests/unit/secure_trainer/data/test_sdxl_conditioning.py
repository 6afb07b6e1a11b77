"""SDXL micro-conditioning numbers are sd-scripts' (original size, crop top-left, target size)."""

from __future__ import annotations

from pathlib import Path

import pytest

from secure_trainer.data.buckets import sdxl_crop_ltrb, sdxl_time_ids
from secure_trainer.data.dataset import KohyaDataset
from secure_trainer.settings import DatasetSettings, SubsetSettings
from tests.unit.kohya_images import make_folder


def test_crop_box_fits_the_image_inside_the_bucket() -> None:
    # 1200x800 (3:2) in a square bucket: full width, height 682.67 centred ⇒ top 170.
    assert sdxl_crop_ltrb((1024, 1024), (1200, 800)) == pytest.approx((0, 170, 1024, 852.667),
                                                                       abs=1e-3)
    # A portrait image in a wider bucket: full height, centred horizontally.
    left, top, right, bottom = sdxl_crop_ltrb((896, 1152), (600, 800))
    assert (left, top, right, bottom) == (16, 0, 880, 1152)


def test_time_ids_order_and_flip() -> None:
    # (orig h, orig w, crop top, crop left, target h, target w)
    assert sdxl_time_ids((1200, 800), (1216, 832), flipped=False) == (800, 1200, 10, 0, 832, 1216)
    # 700x1000 in 768x1024: box width 716.8, left (768 - 716.8) // 2 = 25, right 741.8;
    # the flip mirrors the box: 768 - 741.8 = 26.2 ⇒ int() gives 26, as sd-scripts.
    assert sdxl_time_ids((700, 1000), (768, 1024), flipped=False) == (1000, 700, 0, 25, 1024, 768)
    assert sdxl_time_ids((700, 1000), (768, 1024), flipped=True) == (1000, 700, 0, 26, 1024, 768)
    assert sdxl_time_ids((1000, 500), (1024, 512), flipped=True) == (500, 1000, 0, 0, 512, 1024)


def test_dataset_batch_conditioning(tmp_path: Path) -> None:
    make_folder(tmp_path / "1_x", 2, caption="x", caption_ext=".txt")
    subset = SubsetSettings(image_dir=tmp_path / "1_x", caption_extension=".txt")
    ds = KohyaDataset((DatasetSettings(subsets=(subset,), resolution=(64, 64)),), seed=1,
                      prior_loss_weight=1.0)
    ids = ds.size_conditioning([0, 1], [False, True])
    assert ids.shape == (2, 6)
    for row, record in zip(ids.tolist(), ds.records, strict=True):
        w, h = record.original_size
        assert row[:2] == [h, w] and row[4:] == [64, 64]
