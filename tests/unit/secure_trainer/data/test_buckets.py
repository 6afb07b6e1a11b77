"""Bucketing reproduces sd-scripts' arithmetic (kohya-compat §3, checklist items 6 and 7)."""

from __future__ import annotations

import random

import pytest

from secure_trainer.data.buckets import (
    BucketPlanner,
    adjust_min_max,
    crop_offsets,
    make_bucket_resolutions,
)
from secure_trainer.errors import ConfigError, DataRejected

SD15_BUCKETS = [
    (256, 832),
    (256, 896),
    (256, 960),
    (256, 1024),
    (320, 704),
    (320, 768),
    (384, 640),
    (448, 576),
    (512, 512),
    (576, 448),
    (640, 384),
    (704, 320),
    (768, 320),
    (832, 256),
    (896, 256),
    (960, 256),
    (1024, 256),
]


def test_512_bucket_list_matches_sd_scripts_in_order() -> None:
    assert make_bucket_resolutions((512, 512), 256, 1024, 64) == SD15_BUCKETS


def test_1024_bucket_list_has_41_sorted_buckets_within_area() -> None:
    buckets = make_bucket_resolutions((1024, 1024), 256, 2048, 64)
    assert len(buckets) == 41
    assert buckets == sorted(buckets)
    assert (1024, 1024) in buckets
    assert all(w * h <= 1024 * 1024 and w % 64 == 0 and h % 64 == 0 for w, h in buckets)


@pytest.mark.parametrize(
    ("size", "bucket", "resized", "offset"),
    [
        ((1000, 667), (640, 384), (640, 427), (0, 21)),
        ((300, 900), (256, 832), (277, 832), (10, 0)),  # int(277.33 + 0.5) = 277
        ((4000, 3000), (576, 448), (597, 448), (10, 0)),
        ((512, 512), (512, 512), (512, 512), (0, 0)),
        ((832, 256), (832, 256), (832, 256), (0, 0)),  # an exact bucket size is kept as is
        ((100, 100), (512, 512), (512, 512), (0, 0)),  # small images are upscaled to cover
    ],
)
def test_normal_mode_choice_cover_resize_and_centre_crop(size, bucket, resized, offset) -> None:
    planner = BucketPlanner((512, 512), enable_bucket=True, min_reso=256, max_reso=1024, steps=64)
    choice = planner.select(*size)
    assert (choice.bucket, choice.resized) == (bucket, resized)
    assert crop_offsets(choice.resized, choice.bucket, None) == offset


@pytest.mark.parametrize(
    ("size", "bucket", "resized", "offset"),
    [
        ((1000, 667), (576, 384), (576, 384), (0, 0)),  # both candidates tie → height-rounded one
        ((300, 900), (256, 768), (256, 768), (0, 0)),  # width-rounded candidate is exact
        ((4000, 3000), (512, 384), (512, 384), (0, 0)),  # height-rounded candidate is exact
        ((200, 150), (192, 128), (200, 150), (4, 11)),  # smaller than the area: never enlarged
    ],
)
def test_no_upscale_mode(size, bucket, resized, offset) -> None:
    planner = BucketPlanner((512, 512), enable_bucket=True, steps=64, no_upscale=True)
    choice = planner.select(*size)
    assert (choice.bucket, choice.resized) == (bucket, resized)
    assert crop_offsets(choice.resized, choice.bucket, None) == offset


def test_bucketing_disabled_covers_and_crops_to_the_resolution() -> None:
    planner = BucketPlanner((512, 512), enable_bucket=False)
    choice = planner.select(1000, 667)
    assert (choice.bucket, choice.resized) == ((512, 512), (768, 512))
    assert crop_offsets(choice.resized, choice.bucket, None) == (128, 0)


def test_aspect_ties_pick_the_first_bucket_in_sorted_order() -> None:
    # 64x96 (0.667) is equally far from (32, 96) (0.333) and (64, 64) (1.0): first wins.
    planner = BucketPlanner((64, 64), enable_bucket=True, min_reso=32, max_reso=128, steps=32)
    assert planner.predefined == [(32, 96), (32, 128), (64, 64), (96, 32), (128, 32)]
    assert planner.select(64, 96).bucket == (32, 96)


def test_tiny_dataset_settings_give_one_bucket() -> None:
    planner = BucketPlanner((64, 64), enable_bucket=True, min_reso=64, max_reso=128, steps=64)
    assert planner.predefined == [(64, 64)]
    assert planner.select(160, 96).bucket == (64, 64)


def test_min_max_are_rounded_to_steps_and_checked() -> None:
    assert adjust_min_max((512, 512), 250, 1000, 64) == (192, 1024)
    with pytest.raises(ConfigError, match="min_bucket_reso"):
        adjust_min_max((512, 512), 576, 1024, 64)
    with pytest.raises(ConfigError, match="max_bucket_reso"):
        adjust_min_max((512, 768), 256, 704, 64)
    with pytest.raises(ConfigError, match="multiple of 8"):
        adjust_min_max((512, 512), 256, 1024, 12)


def test_random_crop_stays_inside_the_image() -> None:
    rng = random.Random(3)
    offsets = {crop_offsets((597, 448), (576, 448), rng) for _ in range(200)}
    assert all(0 <= left <= 21 and top == 0 for left, top in offsets)
    assert len(offsets) > 5


def test_image_smaller_than_a_step_is_rejected_in_no_upscale_mode() -> None:
    planner = BucketPlanner((512, 512), enable_bucket=True, steps=64, no_upscale=True)
    with pytest.raises(DataRejected):
        planner.select(40, 300)
