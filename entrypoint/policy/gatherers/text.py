"""Model, dataset and training facts of a `train-llm` job (`run --trainer llm`, or `policy
check` given the same config): a Hugging Face causal-LM folder, one JSONL file, the config's DP
and canary settings.

The JSONL is read the way the trainer reads it and re-scanned with the PII recognizers of
`secure_trainer.privacy.pii` (what the adapter would see now, not what an import claims); the
`import-report.json` that `data import-text` writes beside it adds only its PII mode. Must never
return, log or raise with a record, a subject id, a file name or a path.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.errors import DataRejected
from entrypoint.policy.context import PolicyContext
from entrypoint.policy.facts import DatasetFacts, ModelFacts, TrainingFacts
from entrypoint.policy.gatherers.model import WEIGHT_SUFFIXES, file_format
from entrypoint.policy.gatherers.training import is_inside

if TYPE_CHECKING:
    from secure_trainer.llm.config import LlmTrainConfig

__all__ = ["IMPORT_REPORT", "dataset_facts", "is_llm", "model_facts", "training_facts"]

IMPORT_REPORT = "import-report.json"  # coupling: entrypoint/commands/data_text_cmd.py
_MAX_RECORD_BYTES = 16 * 1024 * 1024
_PII_MODES = ("redact", "reject", "report")


def is_llm(train: object) -> bool:
    """Whether the run's settings are a train-llm config (not Kohya's TrainSettings)."""
    from secure_trainer.llm.config import LlmTrainConfig

    return isinstance(train, LlmTrainConfig)


def model_facts(config: LlmTrainConfig) -> ModelFacts:
    """`safetensors` for a folder whose every weight file is safetensors, `pickle` when any is
    not (pickle, torch zip, unknown), `missing` for no folder, `unknown` for no weights."""
    folder = Path(config.model_name_or_path)
    if not folder.is_dir():
        return ModelFacts(format="missing", pickle_files=0, weight_files=0, vae_format=None,
                          network_weights_format=None)
    formats = [file_format(p) for p in sorted(folder.rglob("*"))
               if p.suffix.lower() in WEIGHT_SUFFIXES and p.is_file()]
    unsafe = sum(1 for f in formats if f != "safetensors")
    fmt = "unknown" if not formats else ("pickle" if unsafe else "safetensors")
    return ModelFacts(format=fmt, pickle_files=unsafe, weight_files=len(formats),
                      vae_format=None, network_weights_format=None)


def _texts(record: object) -> list[str]:
    """Every string of a record except the subject id (scanned as part of the record's text
    by the import; here only what the trainer renders counts)."""
    out: list[str] = []
    if isinstance(record, dict):
        for key, value in record.items():
            if key == "subject":
                continue
            out += [value] if isinstance(value, str) else _texts(value)
    elif isinstance(record, list):
        for item in record:
            out += _texts(item)
    return out


def _import_mode(folder: Path) -> tuple[bool, str | None]:
    try:
        report = json.loads((folder / IMPORT_REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, None
    mode = report.get("pii_mode") if isinstance(report, dict) else None
    return True, mode if mode in _PII_MODES else None


def dataset_facts(config: LlmTrainConfig) -> DatasetFacts:
    """Counts over the JSONL file. Raises DataRejected (no path) when it cannot be read or a
    line is not JSON (the trainer would refuse it too)."""
    from secure_trainer.privacy.pii import PiiType, scan_text

    path = Path(config.dataset_path)
    pii_by_type: Counter[str] = Counter({t.value: 0 for t in PiiType})
    records = with_pii = without_subject = 0
    subjects: set[str] = set()
    if not path.is_file():
        return DatasetFacts(subsets=1, missing_dirs=1, images=0, captions=0, files_by_ext={},
                            unreadable_images=0, images_with_exif=0, images_with_gps=0,
                            images_with_serial=0, images_with_xmp=0, images_with_iptc=0,
                            images_with_png_text=0, images_with_comment=0, captions_with_pii=0,
                            pii_by_type=dict(sorted(pii_by_type.items())),
                            config_strings_with_pii=0, kind="text")
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if len(raw) > _MAX_RECORD_BYTES:
                    raise DataRejected("a record of the text dataset is too large")
                if not raw.strip():
                    continue
                record = json.loads(raw)
                records += 1
                subject = record.get(config.subject_field) if isinstance(record, dict) else None
                if subject is None or str(subject) == "":
                    without_subject += 1
                else:
                    subjects.add(str(subject))
                found = [f for text in _texts(record) for f in scan_text(text)]
                with_pii += int(bool(found))
                pii_by_type.update(f.type.value for f in found)
    except OSError:
        raise DataRejected("the text dataset cannot be read") from None
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataRejected("the text dataset holds a line that is not JSON") from None
    has_report, mode = _import_mode(path.parent)
    return DatasetFacts(
        subsets=1, missing_dirs=0, images=0, captions=0, files_by_ext={".jsonl": 1},
        unreadable_images=0, images_with_exif=0, images_with_gps=0, images_with_serial=0,
        images_with_xmp=0, images_with_iptc=0, images_with_png_text=0, images_with_comment=0,
        captions_with_pii=0, pii_by_type=dict(sorted(pii_by_type.items())),
        config_strings_with_pii=0, kind="text", records=records, records_with_pii=with_pii,
        records_without_subject=without_subject, subjects=len(subjects),
        import_report=has_report, pii_mode=mode)


def training_facts(ctx: PolicyContext, config: LlmTrainConfig) -> TrainingFacts:
    """What the job writes and whether its paths resolve inside the workspace."""
    ws = ctx.workspace_dir
    return TrainingFacts(
        log_level=ctx.log_level.lower(),
        metadata_mode="redacted",  # train-llm writes no path, name or count (llm/metadata.py)
        dp_enabled=config.dp,
        dp_target_epsilon=(float(config.target_epsilon)
                           if config.target_epsilon is not None else None),
        output_in_workspace=is_inside(config.output_dir, ws),
        logging_in_workspace=None,
        model_in_workspace=is_inside(Path(config.model_name_or_path), ws),
        dataset_in_workspace=is_inside(Path(config.dataset_path), ws),
        trainer="llm", dp_unit=config.dp_unit, canaries=config.canaries)
