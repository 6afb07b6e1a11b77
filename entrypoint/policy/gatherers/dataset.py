"""Dataset facts: per-extension counts, image metadata kinds and caption PII, as counts only.

Image headers are read by secure_trainer.privacy.imagemeta (pixels never decoded); captions
and caption-bearing settings are scanned by secure_trainer.privacy.pii. Must never return,
log or raise with a file name, a path, a caption or a metadata value.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from entrypoint.errors import ConfigError, DataRejected
from entrypoint.policy.context import PolicyContext
from entrypoint.policy.facts import DatasetFacts

__all__ = ["CAPTION_SUFFIXES", "IMAGE_SUFFIXES", "gather"]

# coupling: the image extensions the trainer loads (Kohya's IMAGE_EXTENSIONS, lower case).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".avif", ".jxl"})
# Scanned besides each subset's caption_extension: any caption-like file may reach the model.
CAPTION_SUFFIXES = frozenset({".txt", ".caption"})
_MAX_CAPTION_BYTES = 1024 * 1024
# SECURITY: an "extension" is part of a file name; only short plain ones become fact keys.
_EXT_RE = re.compile(r"^\.[a-z0-9]{1,8}$")
_META_KINDS = ("exif", "gps", "serial", "xmp", "iptc", "png_text", "comment")
# coupling: entrypoint/commands/data_cmd.py IMPORT_REPORT, written beside the subset folders.
IMPORT_REPORT = "import-report.json"


def _face_counts(dataset_dirs: Iterable[Path]) -> Counter[str]:
    """Per imported dataset (its import-report.json), how faces were handled: counts only.
    A folder without a readable report (not imported by `data import`) counts nowhere."""
    out: Counter[str] = Counter()
    for folder in dataset_dirs:
        try:
            report = json.loads((folder / IMPORT_REPORT).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict):
            continue
        blurred = report.get("blur_faces") is True
        if report.get("people") is True:
            out["people"] += 1
            out["people_not_blurred"] += not blurred
        out["haar"] += blurred and report.get("face_detector") == "haar"
        found = report.get("faces_found_not_blurred")
        if not blurred and isinstance(found, int) and not isinstance(found, bool) and found > 0:
            out["faces_found_not_blurred"] += found
    return out


def _scan_strings(texts: Iterable[str], pii_by_type: Counter[str]) -> int:
    from secure_trainer.privacy.pii import scan_text  # lazy: helper H's module

    with_pii = 0
    for text in texts:
        findings = scan_text(text)
        if findings:
            with_pii += 1
            pii_by_type.update(f.type.value for f in findings)
    return with_pii


def _read_caption(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(_MAX_CAPTION_BYTES).decode("utf-8", errors="replace")
    except OSError:
        # SECURITY: fail closed (an unscanned caption may hold PII) and name no file
        raise DataRejected("a caption file of the dataset cannot be read") from None


def gather(ctx: PolicyContext) -> DatasetFacts:
    """Counts over every subset folder of ctx.train.

    Raises ConfigError without ctx.train, DataRejected (no path) when a caption cannot be read.
    """
    from secure_trainer.privacy.imagemeta import inspect  # lazy: helper H's modules
    from secure_trainer.privacy.pii import PiiType
    from secure_trainer.settings import TrainSettings

    # coupling: preflight gathers `dataset` only with settings; train-llm's are gatherers/text.py
    if not isinstance(ctx.train, TrainSettings):
        raise ConfigError("dataset facts need the trainer settings")
    by_ext: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    pii_by_type: Counter[str] = Counter({t.value: 0 for t in PiiType})  # every type, 0 if none
    subsets = missing = images = captions = unreadable = captions_pii = 0
    config_strings: list[str] = []
    dataset_dirs: set[Path] = set()
    for dataset in ctx.train.datasets:
        for subset in dataset.subsets:
            subsets += 1
            config_strings += [s for s in (subset.class_tokens, subset.caption_prefix,
                                           subset.caption_suffix) if s]
            folder = Path(subset.image_dir)
            dataset_dirs.add(folder.parent)
            if not folder.is_dir():
                missing += 1
                continue
            caption_suffixes = CAPTION_SUFFIXES | {subset.caption_extension.lower()}
            for path in sorted(folder.iterdir()):
                if not path.is_file():
                    continue
                suffix = path.suffix.lower()
                by_ext[suffix if _EXT_RE.match(suffix) else "(other)"] += 1
                if suffix in IMAGE_SUFFIXES:
                    images += 1
                    try:
                        report = inspect(path)
                    except DataRejected:
                        unreadable += 1
                        continue
                    kinds.update(k for k in _META_KINDS if getattr(report, f"has_{k}"))
                elif suffix in caption_suffixes:
                    captions += 1
                    captions_pii += _scan_strings([_read_caption(path)], pii_by_type)
    config_pii = _scan_strings(config_strings, pii_by_type)
    faces = _face_counts(sorted(dataset_dirs))
    return DatasetFacts(
        subsets=subsets, missing_dirs=missing, images=images, captions=captions,
        files_by_ext=dict(sorted(by_ext.items())), unreadable_images=unreadable,
        images_with_exif=kinds["exif"], images_with_gps=kinds["gps"],
        images_with_serial=kinds["serial"], images_with_xmp=kinds["xmp"],
        images_with_iptc=kinds["iptc"], images_with_png_text=kinds["png_text"],
        images_with_comment=kinds["comment"], captions_with_pii=captions_pii,
        pii_by_type=dict(sorted(pii_by_type.items())), config_strings_with_pii=config_pii,
        people_datasets=faces["people"], people_not_blurred=faces["people_not_blurred"],
        faces_haar_fallback=faces["haar"],
        faces_found_not_blurred=faces["faces_found_not_blurred"],
    )
