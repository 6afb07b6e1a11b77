"""Aspect-ratio bucketing with sd-scripts' arithmetic (kohya-compat §3): sets, choice, resize, crop.

Pure arithmetic on sizes: never opens files and never sees paths, so nothing here can leak data.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from secure_trainer.errors import ConfigError, DataRejected

Size = tuple[int, int]  # (width, height)


@dataclass(frozen=True)
class BucketChoice:
    """Where an image goes: bucket, cover-resized size before the crop, aspect error."""

    bucket: Size
    resized: Size
    ar_error: float


def adjust_min_max(resolution: Size, min_reso: int, max_reso: int, steps: int) -> tuple[int, int]:
    """Round min down and max up to multiples of `steps`, then check they bracket `resolution`.

    Raises ConfigError when steps is not a positive multiple of 8 or the limits exclude the
    resolution.
    """
    if steps <= 0 or steps % 8 != 0:
        raise ConfigError("bucket_reso_steps must be a positive multiple of 8")
    if min_reso % steps:
        min_reso -= min_reso % steps
    if max_reso % steps:
        max_reso += steps - max_reso % steps
    if min(resolution) < min_reso:
        raise ConfigError(
            "min_bucket_reso must be less than or equal to the smaller resolution side"
        )
    if max(resolution) > max_reso:
        raise ConfigError(
            "max_bucket_reso must be greater than or equal to the larger resolution side"
        )
    return min_reso, max_reso


def make_bucket_resolutions(
    resolution: Size, min_reso: int, max_reso: int, steps: int
) -> list[Size]:
    """The predefined bucket set of sd-scripts' normal mode, sorted ascending by (w, h).

    Square bucket of side floor(sqrt(A)/s)·s, then for w = min..max step s: h = min(max,
    floor((A // w)/s)·s) with (w,h) and (h,w) kept when h ≥ min. Raises nothing.
    """
    area = resolution[0] * resolution[1]
    side = int(math.sqrt(area) // steps) * steps
    resos: set[Size] = {(side, side)}
    width = min_reso
    while width <= max_reso:
        height = min(max_reso, int((area // width) // steps) * steps)
        if height >= min_reso:
            resos.add((width, height))
            resos.add((height, width))
        width += steps
    return sorted(resos)


def _cover_size(image: Size, bucket: Size) -> Size:
    """Scale the image so it covers the bucket (one side equal, the other overflowing)."""
    width, height = image
    aspect = width / height
    if aspect > bucket[0] / bucket[1]:
        scale = bucket[1] / height
    else:
        scale = bucket[0] / width
    return int(width * scale + 0.5), int(height * scale + 0.5)


class BucketPlanner:
    """Chooses buckets for image sizes under one dataset's bucket settings."""

    def __init__(
        self,
        resolution: Size,
        *,
        enable_bucket: bool,
        min_reso: int = 256,
        max_reso: int = 1024,
        steps: int = 64,
        no_upscale: bool = False,
    ) -> None:
        """Build the predefined set (normal mode) or prepare on-demand buckets (`no_upscale`).

        Raises ConfigError for bad steps or min/max limits (only checked when bucketing is on).
        """
        self.resolution = resolution
        self.max_area = resolution[0] * resolution[1]
        self.steps = steps
        self.no_upscale = enable_bucket and no_upscale
        self.predefined: list[Size] = []
        if not enable_bucket:
            self.predefined = [resolution]
        elif not no_upscale:
            lo, hi = adjust_min_max(resolution, min_reso, max_reso, steps)
            self.predefined = make_bucket_resolutions(resolution, lo, hi, steps)
        elif steps <= 0 or steps % 8 != 0:
            raise ConfigError("bucket_reso_steps must be a positive multiple of 8")
        self._predefined_set = set(self.predefined)
        self._aspects = [w / h for w, h in self.predefined]

    def _round_to_steps(self, value: float) -> int:
        rounded = int(value + 0.5)
        return rounded - rounded % self.steps

    def select(self, width: int, height: int) -> BucketChoice:
        """Choose the bucket and the cover-resized size for an image of `width`×`height`.

        Raises DataRejected when the image is too small to fill any bucket (no_upscale mode).
        """
        if width <= 0 or height <= 0:
            raise DataRejected("an image has a zero width or height")
        aspect = width / height
        if not self.no_upscale:
            bucket = (width, height)
            if bucket not in self._predefined_set:
                errors = [abs(a - aspect) for a in self._aspects]
                # min() returns the first minimum: ties go to the first bucket in sorted order.
                bucket = self.predefined[errors.index(min(errors))]
            resized = _cover_size((width, height), bucket)
        else:
            resized = self._no_upscale_size(width, height, aspect)
            bucket = (resized[0] - resized[0] % self.steps, resized[1] - resized[1] % self.steps)
            if bucket[0] == 0 or bucket[1] == 0:
                raise DataRejected("an image is smaller than bucket_reso_steps (bucket_no_upscale)")
        return BucketChoice(bucket=bucket, resized=resized, ar_error=bucket[0] / bucket[1] - aspect)

    def _no_upscale_size(self, width: int, height: int, aspect: float) -> Size:
        if width * height <= self.max_area:
            return width, height
        target_w = math.sqrt(self.max_area * aspect)
        target_h = self.max_area / target_w
        # Candidate 1 rounds the width to steps, candidate 2 the height; keep the better aspect.
        w_rounded = self._round_to_steps(target_w)
        h_for_w = self._round_to_steps(w_rounded / aspect)
        h_rounded = self._round_to_steps(target_h)
        w_for_h = self._round_to_steps(h_rounded * aspect)
        err_w = abs(w_rounded / h_for_w - aspect) if h_for_w else math.inf
        err_h = abs(w_for_h / h_rounded - aspect) if h_rounded else math.inf
        if err_w < err_h:
            return w_rounded, int(w_rounded / aspect + 0.5)
        return int(h_rounded * aspect + 0.5), h_rounded


def crop_offsets(resized: Size, bucket: Size, rng: random.Random | None) -> tuple[int, int]:
    """(left, top) of the bucket-sized window in the resized image: centred, or uniform when `rng`.

    Raises nothing; a side that does not overflow gets offset 0.
    """
    offsets = []
    for have, want in zip(resized, bucket, strict=True):
        excess = max(0, have - want)
        offsets.append(rng.randint(0, excess) if rng is not None and excess else excess // 2)
    return offsets[0], offsets[1]


def sdxl_crop_ltrb(bucket: Size, image_size: Size) -> tuple[float, float, float, float]:
    """sd-scripts' SDXL crop box (left, top, right, bottom) in bucket coordinates.

    sd-scripts follows Stability's preprocessing here: the image is fitted INSIDE the bucket
    (not cover-scaled) and the box is centred; left/top feed `crop_coords_top_left`, right is
    kept so a flip can mirror the box. Same float arithmetic (floor-divided offsets, far edges
    not rounded) so the conditioning numbers equal Kohya's after its final int().
    """
    bucket_ar = bucket[0] / bucket[1]
    image_ar = image_size[0] / image_size[1]
    if bucket_ar > image_ar:
        width, height = bucket[1] * image_ar, float(bucket[1])
    else:
        width, height = float(bucket[0]), bucket[0] / image_ar
    left = (bucket[0] - width) // 2
    top = (bucket[1] - height) // 2
    return left, top, left + width, top + height


def sdxl_time_ids(original: Size, bucket: Size, *, flipped: bool) -> tuple[int, int, int, int, int, int]:
    """SDXL micro-conditioning of one sample as sd-scripts builds it: (original h, w,
    crop top, crop left, target h, target w); a flipped sample mirrors the crop's left edge."""
    left, top, right, _bottom = sdxl_crop_ltrb(bucket, original)
    if flipped:
        left = bucket[0] - right
    return original[1], original[0], int(top), int(left), bucket[1], bucket[0]
