"""A small synthetic Kohya DreamBooth dataset for tests and demos: coloured shapes with captions.

Learnable on purpose: `10_subject` holds red circles, `5_style` blue squares, each caption names
the colour and shape, so a few LoRA steps measurably lower the loss. Deterministic (fixed seed).
Writes only below the folder it is given; never touches real data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

# (folder, colour name, RGB, shape); folder names follow `<repeats>_<class tokens>`.
_SUBSETS = (
    ("10_subject", "red", (220, 30, 30), "circle"),
    ("5_style", "blue", (30, 60, 220), "square"),
)
# (width, height, format): mixed aspect ratios, PNG and JPEG, 64–160 px sides.
_IMAGES = (
    (64, 64, "png"),
    (96, 64, "jpg"),
    (64, 96, "png"),
    (128, 96, "jpg"),
    (160, 128, "png"),
    (96, 160, "jpg"),
)
_BACKGROUNDS = (("white", (245, 245, 245)), ("yellow", (240, 220, 90)), ("green", (90, 190, 110)))


@dataclass(frozen=True)
class DatasetSummary:
    """Counts only (safe to print)."""

    subsets: int
    images: int
    captions: int


def _draw(
    width: int,
    height: int,
    rgb: tuple[int, int, int],
    shape: str,
    background: tuple[int, int, int],
    rng: random.Random,
    textured: bool = False,
) -> Image.Image:
    image = Image.new("RGB", (width, height), background)
    if textured:
        # An 8×8 grid of random colours under the shape: high-entropy detail unique to this
        # image, which a model can only reproduce by memorising it (membership-audit fixtures).
        grid = Image.new("RGB", (8, 8))
        grid.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256))
                      for _ in range(64)])
        image = grid.resize((width, height), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    side = int(min(width, height) * rng.uniform(0.45, 0.7))
    left = rng.randint(0, width - side)
    top = rng.randint(0, height - side)
    box = (left, top, left + side, top + side)
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    else:
        draw.rectangle(box, fill=rgb)
    return image


HOLDOUT_SEED = 4321


def make_dataset(out: Path, *, seed: int = 1234, per_subset: int = len(_IMAGES),
                 textured: bool = False, scale: int = 1, square: int | None = None) -> Path:
    """Write `out/10_subject/` and `out/5_style/` (`per_subset` images each, `.txt` captions)
    and return `out`.

    Exactly one image (the last of `5_style`) has no caption file, so it trains on its class
    tokens. Sizes, formats, backgrounds and captions cycle through fixed lists; only the shape's
    size and position come from `seed`, so two seeds give two different image sets from the
    same distribution (see `make_holdout`). `textured` puts a random colour grid behind each
    shape (images a LoRA can memorise individually). Raises OSError only if `out` is not
    writable. `scale` multiplies every image side (`dev dataset --sdxl`: 8, so 512–1280 px
    images, the sizes SDXL's 1024 px buckets expect). `square` makes every image `square`×`square`
    px instead (`dev dataset --square`): one bucket shape at any resolution up to that side, so
    trainers that draw images in different orders still train on identical shapes (benchmarks).
    """
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for folder, colour, rgb, shape in _SUBSETS:
        subset_dir = out / folder
        subset_dir.mkdir(exist_ok=True)
        for i in range(per_subset):
            width, height, fmt = _IMAGES[i % len(_IMAGES)]
            width, height = (square, square) if square else (width * scale, height * scale)
            bg_name, bg_rgb = _BACKGROUNDS[i % len(_BACKGROUNDS)]
            image = _draw(width, height, rgb, shape, bg_rgb, rng, textured)
            stem = f"{shape}_{i:02d}"
            if fmt == "jpg":
                image.save(subset_dir / f"{stem}.jpg", format="JPEG", quality=95)
            else:
                image.save(subset_dir / f"{stem}.png", format="PNG")
            if folder == "5_style" and i == per_subset - 1:
                continue  # the one uncaptioned image
            caption = f"a {colour} {shape}, {bg_name} background, simple shape"
            if textured:  # a per-image tag, like the distinct captions of real data
                caption = f"a {colour} {shape}, pattern {rng.randrange(10000):04d}, simple shape"
            (subset_dir / f"{stem}.txt").write_text(caption + "\n", encoding="utf-8")
    return out


def make_holdout(out: Path, *, per_subset: int = len(_IMAGES), textured: bool = False) -> Path:
    """A holdout set for `make_dataset(..., per_subset=n)`: same layout, captions and
    distribution, different images (another seed) — the non-members of a membership audit."""
    return make_dataset(out, seed=HOLDOUT_SEED, per_subset=per_subset, textured=textured)


def summarize(train_data_dir: Path) -> DatasetSummary:
    """Count subsets, images and caption files below a made dataset (for the dev command)."""
    subsets = [d for d in train_data_dir.iterdir() if d.is_dir()]
    images = sum(1 for d in subsets for p in d.iterdir() if p.suffix in {".png", ".jpg"})
    captions = sum(1 for d in subsets for p in d.iterdir() if p.suffix == ".txt")
    return DatasetSummary(subsets=len(subsets), images=images, captions=captions)
