"""--dataset_config schema/lookup and DreamBooth folder parsing (kohya-compat §1–2, items 1 and 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.kohya.config import parse_train_args
from tests.unit.kohya_images import make_folder, write_image


def argv(root: Path, *extra: str) -> list[str]:
    return [
        "--pretrained_model_name_or_path",
        str(root / "m.safetensors"),
        "--output_dir",
        str(root / "o"),
        *extra,
    ]


def with_config(root: Path, toml: str, *extra: str, warnings: list[str] | None = None):
    (root / "ds.toml").write_text(toml, encoding="utf-8")
    sink = warnings if warnings is not None else []
    return parse_train_args(
        argv(root, "--dataset_config", str(root / "ds.toml"), *extra), warn=sink.append
    )


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    make_folder(tmp_path / "a", 2)
    make_folder(tmp_path / "b", 2)
    return tmp_path


def test_folder_convention(tmp_path: Path) -> None:
    train = tmp_path / "train"
    make_folder(train / "10_sks dog", 2)
    make_folder(train / "abc_x", 2)  # not <int>_: skipped
    make_folder(train / "0_zero", 1)  # repeats < 1: skipped
    make_folder(train / "3", 1)  # bare number: repeats 3, no class tokens
    write_image(train / "in_parent.png")  # images in the parent are ignored
    warnings: list[str] = []
    s = parse_train_args(
        argv(tmp_path, "--train_data_dir", str(train), "--resolution", "64"), warn=warnings.append
    )
    subsets = s.datasets[0].subsets
    assert [(x.image_dir.name, x.num_repeats, x.class_tokens) for x in subsets] == [
        ("10_sks dog", 10, "sks dog"),
        ("3", 3, None),
    ]
    assert any("2 folder(s) skipped" in w for w in warnings)
    assert not any("abc_x" in w or "zero" in w for w in warnings)  # no folder names in messages


def test_reg_data_dir_subsets_are_reg(tmp_path: Path) -> None:
    make_folder(tmp_path / "img" / "5_cat", 1)
    make_folder(tmp_path / "reg" / "1_cat", 1)
    s = parse_train_args(
        argv(
            tmp_path,
            "--train_data_dir",
            str(tmp_path / "img"),
            "--reg_data_dir",
            str(tmp_path / "reg"),
            "--resolution",
            "64",
        ),
        warn=lambda _m: None,
    )
    assert [(x.num_repeats, x.is_reg) for x in s.datasets[0].subsets] == [(5, False), (1, True)]


def test_lookup_subset_dataset_general_cli_default(root: Path) -> None:
    s = with_config(
        root,
        f"""
[general]
caption_extension = ".general"
keep_tokens = 2
shuffle_caption = true
[[datasets]]
resolution = [128, 64]
keep_tokens = 3
  [[datasets.subsets]]
  image_dir = "{root / "a"}"
  keep_tokens = 4
  [[datasets.subsets]]
  image_dir = "{root / "b"}"
""",
        "--flip_aug",
        "--train_batch_size",
        "3",
        "--caption_extension",
        ".cli",
    )
    a, b = s.datasets[0].subsets
    assert (a.keep_tokens, b.keep_tokens) == (4, 3)  # subset > dataset
    assert a.caption_extension == ".general" and a.shuffle_caption  # general > CLI
    assert a.flip_aug and s.datasets[0].batch_size == 3  # CLI (train_batch_size → batch_size)
    assert a.caption_dropout_rate == 0.0 and a.num_repeats == 1  # defaults
    assert s.datasets[0].resolution == (128, 64)


def test_folder_names_are_not_parsed_with_dataset_config(tmp_path: Path) -> None:
    make_folder(tmp_path / "10_sks dog", 1)
    s = with_config(
        tmp_path,
        f"[[datasets]]\nresolution = 64\n[[datasets.subsets]]\n"
        f'image_dir = "{tmp_path / "10_sks dog"}"\n',
    )
    sub = s.datasets[0].subsets[0]
    assert (sub.num_repeats, sub.class_tokens) == (1, None)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[general]\nbogus = 1\n", "unknown key 'bogus' in [general]"),
        (
            "[[datasets]]\nresolution = 64\nflipaug = true\n[[datasets.subsets]]\nimage_dir = 'x'\n",
            "unknown key 'flipaug' in [[datasets]] #1",
        ),
        (
            "[[datasets]]\nresolution = 64\n[[datasets.subsets]]\nimage_dir = 'x'\nresolution = 64\n",
            "'resolution' is not allowed in [[datasets.subsets]] #1",
        ),
        (
            "[general]\nimage_dir = 'x'\n[[datasets]]\n[[datasets.subsets]]\nimage_dir = 'x'\n",
            "'image_dir' is not allowed in [general]",
        ),
        (
            "[[datasets]]\nresolution = 64\n[[datasets.subsets]]\nimage_dir = 'x'\nnum_repeats = '3'\n",
            "'num_repeats' in [[datasets.subsets]] #1 of dataset #1 must be int",
        ),
        ("[oops]\n", "unknown top-level key 'oops'"),
        ("[[datasets]]\nresolution = 500\n[[datasets.subsets]]\nimage_dir = 'x'\n", "500"),
        (
            (
                "[[datasets]]\nresolution = 64\n[[datasets.subsets]]\nimage_dir = 'x'\n"
                "[[datasets.subsets]]\nmetadata_file = 'm.json'\n"
            ),
            "cannot be mixed",
        ),
        (
            "[[datasets]]\nresolution = 64\n[[datasets.subsets]]\nmetadata_file = 'm.json'\n",
            "metadata_file",
        ),
        (
            "[[datasets]]\nresolution = 64\n[[datasets.subsets]]\nimage_dir = 'x'\nface_crop_aug_range = [2.0, 4.0]\n",
            "face_crop_aug_range",
        ),
        (
            "[[datasets]]\nresolution = 64\n[[datasets.subsets]]\nimage_dir = 'x'\nalpha_mask = true\n",
            "alpha_mask",
        ),
        ("[general]\nresolution = 64\nshuffle_caption = \n", "line 3"),
    ],
)
def test_schema_is_strict(root: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        with_config(root, toml)
    assert err.value.exit_code == 2


def test_duplicate_image_dir_in_one_dataset_is_ignored_but_kept_across_datasets(root: Path) -> None:
    a = root / "a"
    warnings: list[str] = []
    s = with_config(
        root,
        f"""
[[datasets]]
resolution = 64
  [[datasets.subsets]]
  image_dir = "{a}"
  num_repeats = 2
  [[datasets.subsets]]
  image_dir = "{a}"
  num_repeats = 7
[[datasets]]
resolution = 128
  [[datasets.subsets]]
  image_dir = "{a}"
""",
        warnings=warnings,
    )
    assert [len(d.subsets) for d in s.datasets] == [1, 1]
    assert s.datasets[0].subsets[0].num_repeats == 2  # the first one wins
    assert len(warnings) == 1 and str(a) not in warnings[0]


def test_missing_image_dir_is_data_rejected(root: Path) -> None:
    with pytest.raises(DataRejected) as err:
        with_config(
            root,
            f"[[datasets]]\nresolution = 64\n[[datasets.subsets]]\n"
            f'image_dir = "{root / "nope_private"}"\n',
        )
    assert "nope_private" not in err.value.message


def test_resolution_from_cli_when_config_has_none(root: Path) -> None:
    s = with_config(
        root,
        f'[[datasets]]\n[[datasets.subsets]]\nimage_dir = "{root / "a"}"\n',
        "--resolution",
        "128,64",
    )
    assert s.datasets[0].resolution == (128, 64)
    with pytest.raises(ConfigError, match="resolution is required"):
        with_config(root, f'[[datasets]]\n[[datasets.subsets]]\nimage_dir = "{root / "a"}"\n')
