"""KohyaDataset on real image files: extensions, captions, repeats, reg balancing, batches, loading."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from secure_trainer.data.dataset import KohyaDataset
from secure_trainer.devtools.synthetic_dataset import make_dataset
from secure_trainer.errors import DataRejected
from secure_trainer.settings import DatasetSettings, SubsetSettings
from tests.unit.kohya_images import make_folder, write_caption, write_image


def dataset(
    *subsets: SubsetSettings,
    batch_size: int = 1,
    resolution: int = 64,
    seed: int = 0,
    warn: list[str] | None = None,
    **ds: object,
) -> KohyaDataset:
    settings = DatasetSettings(
        subsets=subsets, resolution=(resolution, resolution), batch_size=batch_size, **ds
    )  # type: ignore[arg-type]
    sink = warn if warn is not None else []
    return KohyaDataset((settings,), seed=seed, prior_loss_weight=0.5, warn=sink.append)


def test_extension_filter_is_exactly_the_kohya_list_case_sensitive(tmp_path: Path) -> None:
    folder = tmp_path / "1_x"
    accepted = [".png", ".PNG", ".jpg", ".JPG", ".jpeg", ".JPEG", ".webp", ".WEBP", ".bmp", ".BMP"]
    for i, ext in enumerate(accepted + [".Jpg", ".gif", ".tiff"]):
        write_image(folder / f"i{i:02d}{ext}")
    (folder / "nested").mkdir()
    write_image(folder / "nested" / "deep.png")
    ds = dataset(SubsetSettings(image_dir=folder))
    assert len(ds.records) == len(accepted)


def test_captions_from_files_then_class_tokens_then_empty(tmp_path: Path) -> None:
    folder = tmp_path / "1_x"
    write_image(folder / "a.png")
    write_caption(folder / "a.caption", "file caption\nignored second line")
    write_image(folder / "b.png")  # no caption → class tokens
    write_caption(folder / "b.txt", "wrong extension")
    ds = dataset(SubsetSettings(image_dir=folder, class_tokens="sks dog"))
    rng = random.Random(0)
    assert [ds.caption(i, 1, rng) for i in range(2)] == ["file caption", "sks dog"]

    warnings: list[str] = []
    bare = dataset(SubsetSettings(image_dir=folder, caption_extension=".none"), warn=warnings)
    assert [bare.caption(i, 1, rng) for i in range(2)] == ["", ""]
    assert any("empty caption" in w for w in warnings)


def test_zero_byte_caption_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "1_private_name"
    write_image(folder / "a.png")
    write_caption(folder / "a.caption", "")
    with pytest.raises(DataRejected) as err:
        dataset(SubsetSettings(image_dir=folder))
    assert "private_name" not in str(err.value)


def test_reg_balancing_5x10_plus_20_reg_gives_50_50(tmp_path: Path) -> None:
    train = make_folder(tmp_path / "10_dog", 5)
    reg = make_folder(tmp_path / "1_reg", 20)
    ds = dataset(
        SubsetSettings(image_dir=train, num_repeats=10),
        SubsetSettings(image_dir=reg, num_repeats=1, is_reg=True),
        batch_size=4,
    )
    assert ds.num_train_images == 50 and ds.num_reg_images == 20
    samples = Counter()
    weights = set()
    for batch in ds.batches(1, load_images=False):
        for i, w in zip(batch.indices, batch.loss_weights.tolist()):
            samples[ds.records[i].is_reg] += 1
            weights.add((ds.records[i].is_reg, w))
    assert samples == {False: 50, True: 50}
    assert weights == {(False, 1.0), (True, 0.5)}  # reg samples carry prior_loss_weight
    assert sorted(r.repeats for r in ds.records if r.is_reg) == [2] * 10 + [3] * 10


def test_surplus_reg_images_are_unused_with_a_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    ds = dataset(
        SubsetSettings(image_dir=make_folder(tmp_path / "1_a", 2), num_repeats=1),
        SubsetSettings(image_dir=make_folder(tmp_path / "1_r", 5), is_reg=True),
        warn=warnings,
    )
    assert sum(r.repeats for r in ds.records if r.is_reg) == 2
    assert ds.num_reg_images == 5
    assert any("not used" in w for w in warnings)


def test_batches_never_mix_buckets_and_count_matches_formula(tmp_path: Path) -> None:
    folder = tmp_path / "1_x"
    make_folder(folder, 3, size=(64, 64))
    for i in range(5):
        write_image(folder / f"wide{i}.png", (192, 64))
    ds = dataset(
        SubsetSettings(image_dir=folder, num_repeats=1),
        batch_size=2,
        enable_bucket=True,
        min_bucket_reso=32,
        max_bucket_reso=128,
        bucket_reso_steps=32,
    )
    per_bucket = Counter(r.bucket for r in ds.records)
    expected = sum(math.ceil(n / 2) for n in per_bucket.values())
    assert len(per_bucket) == 2 and ds.batches_per_epoch() == expected == 5
    batches = list(ds.batches(1))
    assert len(batches) == expected
    for batch in batches:
        assert {ds.records[i].bucket for i in batch.indices} == {batch.bucket}
        assert batch.images is not None
        assert batch.images.shape[-2:] == (batch.bucket[1], batch.bucket[0])


def test_epoch_order_is_seeded_and_changes_per_epoch(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "3_x", 6)
    a = dataset(SubsetSettings(image_dir=folder, num_repeats=3), seed=7)
    b = dataset(SubsetSettings(image_dir=folder, num_repeats=3), seed=7)
    order = [x.indices for x in a.batches(1, load_images=False)]
    assert order == [x.indices for x in b.batches(1, load_images=False)]
    assert order != [x.indices for x in a.batches(2, load_images=False)]
    assert sorted(i for idx in order for i in idx) == sorted(list(range(6)) * 3)


def test_images_load_lazily_as_normalised_tensors_and_flip(tmp_path: Path) -> None:
    folder = tmp_path / "1_x"
    image = Image.new("RGB", (96, 64), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 48, 64))  # left half white
    folder.mkdir()
    image.save(folder / "half.png")
    ds = dataset(SubsetSettings(image_dir=folder, flip_aug=True), resolution=64)
    tensor = ds.load_image(0)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0
    assert tensor[:, 32, 0].tolist() == [1.0, 1.0, 1.0] and tensor[:, 32, -1].tolist() == [-1.0] * 3
    assert torch.equal(ds.load_image(0, flip=True), tensor.flip(-1))
    flips = [f for e in range(1, 30) for b in ds.batches(e, load_images=False) for f in b.flipped]
    assert 0 < sum(flips) < len(flips)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    folder = tmp_path / "1_x"
    write_image(
        folder / "rot.jpg", (128, 64), exif_orientation=6
    )  # stored landscape, shown portrait
    ds = dataset(
        SubsetSettings(image_dir=folder),
        enable_bucket=True,
        min_bucket_reso=32,
        max_bucket_reso=128,
        bucket_reso_steps=32,
    )
    assert ds.records[0].original_size == (64, 128)
    assert ds.load_image(0).shape[1] > ds.load_image(0).shape[2]  # taller than wide


def test_missing_folder_and_empty_dataset_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataRejected, match="not found"):
        dataset(SubsetSettings(image_dir=tmp_path / "absent"))
    (tmp_path / "1_empty").mkdir()
    with pytest.raises(DataRejected, match="no training images"):
        dataset(SubsetSettings(image_dir=tmp_path / "1_empty"))


def test_corrupt_image_is_rejected_without_its_name(tmp_path: Path) -> None:
    folder = tmp_path / "1_x"
    folder.mkdir()
    (folder / "patient_jane.png").write_bytes(b"not an image")
    with pytest.raises(DataRejected) as err:
        dataset(SubsetSettings(image_dir=folder))
    assert "jane" not in str(err.value)


def test_synthetic_dataset_trains_at_resolution_64(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    subsets = tuple(
        SubsetSettings(
            image_dir=root / name, num_repeats=n, class_tokens=cls, caption_extension=".txt"
        )
        for name, n, cls in (("10_subject", 10, "subject"), ("5_style", 5, "style"))
    )
    warnings: list[str] = []
    ds = dataset(
        *subsets,
        enable_bucket=True,
        min_bucket_reso=64,
        max_bucket_reso=128,
        bucket_reso_steps=64,
        warn=warnings,
    )
    assert ds.buckets == [(64, 64)] and ds.num_train_images == 6 * 10 + 6 * 5
    captions = [ds.raw_caption(i) for i in range(len(ds.records))]
    assert sum(c == "style" for c in captions) == 1  # the one uncaptioned image
    assert all(("red circle" in c) or ("blue square" in c) for c in captions if c != "style")
    assert {Path(p).suffix for p in (root / "10_subject").iterdir()} == {".png", ".jpg", ".txt"}
    assert warnings == []
    batch = next(iter(ds.batches(1)))
    assert batch.images is not None and batch.images.shape == (1, 3, 64, 64)


def test_dev_dataset_command_prints_counts_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from entrypoint.cli import main

    assert main(["dev", "dataset", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "2 subsets, 12 images, 11 captions" in out
    assert "circle" not in out and "subject" not in out and str(tmp_path) not in out
    assert (tmp_path / "out" / "10_subject").is_dir() and (tmp_path / "out" / "5_style").is_dir()


def test_dev_dataset_square_gives_one_shape(tmp_path: Path) -> None:
    """`dev dataset --square 96`: every image 96x96 (one bucket shape for benchmarks)."""
    from PIL import Image

    from entrypoint.cli import main

    assert main(["dev", "dataset", "--square", "96", str(tmp_path / "out")]) == 0
    images = [p for p in (tmp_path / "out").rglob("*") if p.suffix in {".png", ".jpg"}]
    assert len(images) == 12
    sizes = set()
    for path in images:
        with Image.open(path) as image:
            sizes.add(image.size)
    assert sizes == {(96, 96)}
