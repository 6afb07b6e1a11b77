"""Kohya dataset inputs → DatasetSettings: `--dataset_config` TOML schema and DreamBooth folders.

Validation is strict (kohya-compat §2): unknown keys, keys at the wrong level, wrong types and
unsupported modes are ConfigErrors naming the key and the table. Lookup is subset > dataset >
general > command line > default. SECURITY: messages never carry a path, folder name or caption.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from secure_trainer.data.buckets import BucketPlanner
from secure_trainer.data.image_io import RESIZE_INTERPOLATIONS, list_images
from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.settings import DatasetSettings, SubsetSettings

Warn = Callable[[str], None]

# key → accepted Python types (bool is checked separately: TOML true is not an int here).
_DATASET_KEYS: Mapping[str, tuple[type, ...]] = {
    "resolution": (int, list),
    "batch_size": (int,),
    "enable_bucket": (bool,),
    "min_bucket_reso": (int,),
    "max_bucket_reso": (int,),
    "bucket_reso_steps": (int,),
    "bucket_no_upscale": (bool,),
    "network_multiplier": (float, int),
    "validation_split": (float, int),
    "validation_seed": (int,),
    "resize_interpolation": (str,),
}
_SUBSET_KEYS: Mapping[str, tuple[type, ...]] = {
    "num_repeats": (int,),
    "class_tokens": (str,),
    "caption_extension": (str,),
    "cache_info": (bool,),
    "shuffle_caption": (bool,),
    "caption_separator": (str,),
    "keep_tokens": (int,),
    "keep_tokens_separator": (str,),
    "secondary_separator": (str,),
    "enable_wildcard": (bool,),
    "caption_prefix": (str,),
    "caption_suffix": (str,),
    "caption_dropout_rate": (float, int),
    "caption_dropout_every_n_epochs": (int,),
    "caption_tag_dropout_rate": (float, int),
    "token_warmup_min": (int,),
    "token_warmup_step": (float, int),
    "flip_aug": (bool,),
    "color_aug": (bool,),
    "random_crop": (bool,),
    "face_crop_aug_range": (list,),
    "custom_attributes": (dict,),
    "resize_interpolation": (str,),
}
_SUBSET_ONLY_KEYS: Mapping[str, tuple[type, ...]] = {
    "image_dir": (str,),
    "is_reg": (bool,),
    "alpha_mask": (bool,),
    "metadata_file": (str,),
    "conditioning_data_dir": (str,),
}
# Dataset-config name → command-line name where they differ.
_CLI_NAMES = {"batch_size": "train_batch_size", "num_repeats": "dataset_repeats"}


def _where(ds: int | None = None, sub: int | None = None) -> str:
    if ds is None:
        return "[general]"
    if sub is None:
        return f"[[datasets]] #{ds + 1}"
    return f"[[datasets.subsets]] #{sub + 1} of dataset #{ds + 1}"


def _check_table(
    table: object, allowed: Mapping[str, tuple[type, ...]], where: str, misplaced: Mapping[str, str]
) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"dataset_config: {where} must be a table")
    for key, value in table.items():
        if key in misplaced:
            raise ConfigError(
                f"dataset_config: key '{key}' is not allowed in {where} ({misplaced[key]})"
            )
        if key not in allowed:
            raise ConfigError(f"dataset_config: unknown key '{key}' in {where}")
        types = allowed[key]
        ok = isinstance(value, types) and (isinstance(value, bool) == (bool in types))
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"dataset_config: key '{key}' in {where} must be {names}")
    return dict(table)


def toml_error_location(err: tomllib.TOMLDecodeError) -> str:
    """ "line L, column C" of a TOML error, without tomllib's text (it can quote the file)."""
    match = re.search(r"\(at (line \d+, column \d+|end of document)\)", str(err))
    return f"at {match.group(1)}" if match else "location unknown"


def load_dataset_config(path: Path) -> dict[str, Any]:
    """Read and validate a dataset config (TOML, or JSON by suffix); returns the raw tables.

    Raises ConfigError for a missing/unreadable file, invalid TOML (with its line), unknown or
    misplaced keys, wrong types, and fine-tuning/ControlNet subsets (not supported).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ConfigError("dataset_config file not found or not readable") from None
    try:
        raw: object = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"dataset_config is not valid TOML ({toml_error_location(err)})"
        ) from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"dataset_config is not valid JSON (line {err.lineno})") from None
    if not isinstance(raw, dict):
        raise ConfigError("dataset_config must be a table")
    for key in raw:
        if key not in ("general", "datasets"):
            raise ConfigError(
                f"dataset_config: unknown top-level key '{key}' (expected [general], [[datasets]])"
            )
    subset_only = {k: "subset-only key" for k in _SUBSET_ONLY_KEYS}
    dataset_level = {k: "dataset-level key" for k in _DATASET_KEYS if k not in _SUBSET_KEYS}
    upper = {**_DATASET_KEYS, **_SUBSET_KEYS}
    general = _check_table(raw.get("general", {}), upper, _where(), subset_only)
    datasets = raw.get("datasets", [])
    if not isinstance(datasets, list) or not datasets:
        raise ConfigError("dataset_config needs at least one [[datasets]] table")
    checked = []
    for i, ds in enumerate(datasets):
        table = _check_table(ds, {**upper, "subsets": (list,)}, _where(i), subset_only)
        subsets = [
            _check_table(s, {**_SUBSET_KEYS, **_SUBSET_ONLY_KEYS}, _where(i, j), dataset_level)
            for j, s in enumerate(table.pop("subsets", []))
        ]
        ft = [("metadata_file" in s) for s in subsets]
        if any(ft) and not all(ft):
            raise ConfigError(
                f"dataset_config: DreamBooth and fine-tuning subsets cannot be mixed in "
                f"{_where(i)}; split them into separate datasets"
            )
        if any(ft):
            raise ConfigError(
                "dataset_config: key 'metadata_file' (fine-tuning mode) is not supported"
            )
        if any("conditioning_data_dir" in s for s in subsets):
            raise ConfigError(
                "dataset_config: key 'conditioning_data_dir' (ControlNet) is not supported"
            )
        if not subsets:
            raise ConfigError(f"dataset_config: {_where(i)} has no [[datasets.subsets]]")
        checked.append((table, subsets))
    return {"general": general, "datasets": checked}


def parse_resolution(value: object, where: str) -> tuple[int, int]:
    """`512`, `"512"`, `"512,768"` or `[512, 768]` → (width, height), each a multiple of 64.

    Raises ConfigError for a malformed value or a side that is not a positive multiple of 64.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{where}: resolution must be a number or 'width,height'")
    parts: list[object]
    if isinstance(value, int):
        parts = [value]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        raise ConfigError(f"{where}: resolution must be a number or 'width,height'")
    try:
        sides = [int(p) for p in parts]  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: resolution must be a number or 'width,height'") from None
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2:
        raise ConfigError(f"{where}: resolution must be one number or two (width,height)")
    for side in sides:
        if side <= 0 or side % 64:
            raise ConfigError(f"{where}: resolution {side} is not a positive multiple of 64")
    return sides[0], sides[1]


class _Lookup:
    """subset > dataset > general > command line > default, first non-None wins."""

    def __init__(self, cli: Mapping[str, object], *layers: Mapping[str, object]) -> None:
        self.cli = cli
        self.layers = layers

    def get(self, key: str, default: object = None) -> Any:
        for layer in self.layers:
            if layer.get(key) is not None:
                return layer[key]
        cli_value = self.cli.get(_CLI_NAMES.get(key, key))
        return cli_value if cli_value is not None else default


def _subset(
    look: _Lookup,
    image_dir: Path,
    *,
    is_reg: bool,
    repeats: int,
    class_tokens: str | None,
    where: str,
    warn: Warn,
) -> SubsetSettings:
    if look.get("face_crop_aug_range") is not None:
        raise ConfigError(f"{where}: option 'face_crop_aug_range' is not supported")
    if look.get("alpha_mask"):
        raise ConfigError(
            f"{where}: option 'alpha_mask' is not supported (masked loss is not implemented)"
        )
    if look.get("cache_info"):
        warn(
            "option 'cache_info' is ignored: metadata_cache.json is never written "
            "(it would hold captions)"
        )
    if look.get("custom_attributes"):
        warn("option 'custom_attributes' is ignored: custom dataset classes are not supported")
    interpolation = look.get("resize_interpolation")
    if interpolation is not None and interpolation not in RESIZE_INTERPOLATIONS:
        raise ConfigError(
            f"{where}: resize_interpolation must be one of "
            f"{', '.join(sorted(RESIZE_INTERPOLATIONS))}"
        )
    if repeats < 1:
        raise ConfigError(f"{where}: num_repeats must be at least 1")
    ext = str(look.get("caption_extension", ".caption"))
    return SubsetSettings(
        image_dir=image_dir,
        num_repeats=repeats,
        is_reg=is_reg,
        class_tokens=class_tokens or None,
        caption_extension=ext if ext.startswith(".") else "." + ext,
        shuffle_caption=bool(look.get("shuffle_caption", False)),
        caption_separator=str(look.get("caption_separator", ",")),
        keep_tokens=int(look.get("keep_tokens", 0)),
        keep_tokens_separator=str(look.get("keep_tokens_separator", "")),
        secondary_separator=look.get("secondary_separator"),
        enable_wildcard=bool(look.get("enable_wildcard", False)),
        caption_prefix=look.get("caption_prefix"),
        caption_suffix=look.get("caption_suffix"),
        caption_dropout_rate=float(look.get("caption_dropout_rate", 0.0)),
        caption_dropout_every_n_epochs=int(look.get("caption_dropout_every_n_epochs", 0)),
        caption_tag_dropout_rate=float(look.get("caption_tag_dropout_rate", 0.0)),
        token_warmup_min=int(look.get("token_warmup_min", 1)),
        token_warmup_step=float(look.get("token_warmup_step", 0)),
        flip_aug=bool(look.get("flip_aug", False)),
        color_aug=bool(look.get("color_aug", False)),
        random_crop=bool(look.get("random_crop", False)),
        resize_interpolation=interpolation,
    )


def _dataset(look: _Lookup, subsets: tuple[SubsetSettings, ...], where: str) -> DatasetSettings:
    resolution = look.get("resolution")
    if resolution is None:
        raise ConfigError(f"{where}: resolution is required (--resolution or resolution = ...)")
    if float(look.get("validation_split", 0.0) or 0.0) != 0.0:
        raise ConfigError(f"{where}: option 'validation_split' is not supported")
    batch_size = int(look.get("batch_size", 1))
    if batch_size < 1:
        raise ConfigError(f"{where}: batch_size must be at least 1")
    settings = DatasetSettings(
        subsets=subsets,
        resolution=parse_resolution(resolution, where),
        batch_size=batch_size,
        enable_bucket=bool(look.get("enable_bucket", False)),
        min_bucket_reso=int(look.get("min_bucket_reso", 256)),
        max_bucket_reso=int(look.get("max_bucket_reso", 1024)),
        bucket_reso_steps=int(look.get("bucket_reso_steps", 64)),
        bucket_no_upscale=bool(look.get("bucket_no_upscale", False)),
        network_multiplier=float(look.get("network_multiplier", 1.0)),
    )
    # Fail at parse time (before any model loads) on bucket limits that exclude the resolution.
    BucketPlanner(
        settings.resolution,
        enable_bucket=settings.enable_bucket,
        min_reso=settings.min_bucket_reso,
        max_reso=settings.max_bucket_reso,
        steps=settings.bucket_reso_steps,
        no_upscale=settings.bucket_no_upscale,
    )
    return settings


def datasets_from_config(
    path: Path, cli: Mapping[str, object], *, warn: Warn
) -> tuple[DatasetSettings, ...]:
    """Build the datasets of a `--dataset_config` file; folder names are NOT parsed here.

    Raises ConfigError (schema, values) and DataRejected (missing image_dir).
    """
    config = load_dataset_config(path)
    general: dict[str, Any] = config["general"]
    out = []
    for i, (table, subsets) in enumerate(config["datasets"]):
        built: list[SubsetSettings] = []
        seen: set[Path] = set()
        for j, sub in enumerate(subsets):
            where = _where(i, j)
            if "image_dir" not in sub:
                raise ConfigError(f"dataset_config: {where} needs image_dir")
            image_dir = Path(sub["image_dir"])
            if image_dir in seen:
                warn(f"dataset_config: {where} repeats an image_dir of its dataset; it is ignored")
                continue
            seen.add(image_dir)
            look = _Lookup(cli, sub, table, general)
            built.append(
                _subset(
                    look,
                    image_dir,
                    is_reg=bool(sub.get("is_reg", False)),
                    repeats=int(look.get("num_repeats", 1)),
                    class_tokens=look.get("class_tokens"),
                    where=where,
                    warn=warn,
                )
            )
        out.append(_dataset(_Lookup(cli, table, general), tuple(built), _where(i)))
    return tuple(out)


def _folder_subsets(
    parent: Path, cli: Mapping[str, object], *, is_reg: bool, warn: Warn
) -> list[SubsetSettings]:
    if not parent.is_dir():
        what = "regularization" if is_reg else "training"
        raise DataRejected(
            f"{what} data folder not found (check --{'reg' if is_reg else 'train'}_data_dir)"
        )
    subsets = []
    skipped = 0
    look = _Lookup(cli)
    for child in sorted(p for p in parent.iterdir() if p.is_dir()):
        head, _, rest = child.name.partition("_")
        try:
            repeats = int(head)
        except ValueError:
            skipped += 1
            continue
        if repeats < 1:
            skipped += 1
            continue
        subsets.append(
            _subset(
                look,
                child,
                is_reg=is_reg,
                repeats=repeats,
                class_tokens=rest or None,
                where="train_data_dir",
                warn=warn,
            )
        )
    if skipped:
        warn(f"{skipped} folder(s) skipped: names must start with <repeats>_ (repeats ≥ 1)")
    return subsets


def datasets_from_folders(cli: Mapping[str, object], *, warn: Warn) -> tuple[DatasetSettings, ...]:
    """One dataset from `--train_data_dir` (and `--reg_data_dir`) `<N>_<class tokens>` folders.

    Raises ConfigError when train_data_dir is not given, DataRejected when a folder is missing.
    """
    train_dir = cli.get("train_data_dir")
    if train_dir is None:
        raise ConfigError("give --train_data_dir or --dataset_config")
    subsets = _folder_subsets(Path(str(train_dir)), cli, is_reg=False, warn=warn)
    reg_dir = cli.get("reg_data_dir")
    if reg_dir is not None:
        subsets += _folder_subsets(Path(str(reg_dir)), cli, is_reg=True, warn=warn)
    return (_dataset(_Lookup(cli), tuple(subsets), "command line"),)


def datasets_from_flat_folder(cli: Mapping[str, object], *, caption_csv: Path, repeats: int,
                              warn: Warn) -> tuple[DatasetSettings, ...]:
    """One dataset whose single subset is the images directly in `train_data_dir`, captioned by
    `caption_csv` (lora-scripts' `metadata_path`; images it does not list fall back to sidecar-free
    empty captions with a warning, as Kohya does for missing captions).

    Raises ConfigError when train_data_dir is not given, DataRejected when it is missing.
    """
    train_dir = cli.get("train_data_dir")
    if train_dir is None:
        raise ConfigError("config: train_data_dir is required with metadata_path")
    folder = Path(str(train_dir))
    if not folder.is_dir():
        raise DataRejected("training data folder not found (check train_data_dir)")
    look = _Lookup(cli)
    subset = _subset(look, folder, is_reg=False, repeats=repeats, class_tokens=None,
                     where="config", warn=warn)
    subset = dataclasses.replace(subset, caption_csv=caption_csv)
    return (_dataset(look, (subset,), "config"),)


def require_images(datasets: tuple[DatasetSettings, ...]) -> None:
    """Fail early (before any model loads) when folders are missing or hold no training image.

    Raises DataRejected; the message names no path.
    """
    total = 0
    for ds in datasets:
        for sub in ds.subsets:
            if not sub.image_dir.is_dir():
                raise DataRejected(
                    "training data folder not found (check image_dir / train_data_dir)"
                )
            if not sub.is_reg:
                total += len(list_images(sub.image_dir))
    if total == 0:
        raise DataRejected(
            "no training images found (folders must be named <repeats>_<name> and hold "
            ".png/.jpg/.jpeg/.webp/.bmp files)"
        )
