"""`audit canary`: load base + adapter, measure every planted canary on both, write the report.

The report (`canary-report.json` and `canary-exposure.png` in the chosen folder) holds
repetition counts, exposures (bits) and extraction flags for the adapter and for the base
model on the same candidates, ε when the adapter was trained with DP, and optionally the
calibrated loss-threshold membership test (mia_text.py). Never holds a secret, pseudonym,
path or record.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.llm.canary import read_sidecar
from secure_trainer.llm.canary_report import CanaryReport
from secure_trainer.llm.export import CONFIG_FILE, WEIGHTS_FILE
from secure_trainer.llm.exposure import candidate_space_bits, measure
from secure_trainer.llm.mia_text import encode_file, mean_losses, text_mia
from secure_trainer.llm.model import load_lm
from secure_trainer.models.safetensors_check import PICKLE_MESSAGE, PICKLE_SUFFIXES, read_header
from secure_trainer.privacy.dp_record import read_record

REPORT_FILE = "canary-report.json"
PLOT_FILE = "canary-exposure.png"


def check_adapter_dir(path: Path) -> None:
    """A PEFT adapter folder with safetensors weights; pickles refused (DataRejected)."""
    if not path.is_dir():
        raise ConfigError("option '--adapter' must be an adapter folder")
    if any(p.suffix.lower() in PICKLE_SUFFIXES for p in path.iterdir()):
        raise DataRejected(PICKLE_MESSAGE)
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise DataRejected("the adapter folder needs adapter_config.json and "
                           "adapter_model.safetensors")
    read_header(path / WEIGHTS_FILE)


def run_canary_audit(adapter_dir: Path, base_dir: Path, *, candidates: int = 1000,
                     seed: int = 0, members: Path | None = None,
                     holdout: Path | None = None) -> CanaryReport:
    """Measure every canary of `adapter_dir` on base and adapter (and, given `members` and
    `holdout` JSONL files, the calibrated loss-threshold membership test).

    Raises ConfigError (bad options), DataRejected (missing/bad adapter, canary list, model
    or record files).
    """
    if candidates < 10:
        raise ConfigError("option '--candidates' must be at least 10")
    if (members is None) != (holdout is None):
        raise ConfigError("options '--members' and '--holdout' go together")
    check_adapter_dir(adapter_dir)
    canaries, template = read_sidecar(adapter_dir)
    lm = load_lm(base_dir)
    pad_id = int(lm.tokenizer.pad_token_id)
    sides = ([encode_file(p, lm.tokenizer, template) for p in (members, holdout)]
             if members is not None and holdout is not None else [])
    if sides and not all(sides):
        raise DataRejected("the members or holdout file has no usable record")
    base_losses = [mean_losses(lm.model, side, pad_id) for side in sides]
    base = measure(lm.model, lm.tokenizer, canaries, template, candidates=candidates, seed=seed)
    from peft import PeftModel

    try:
        adapted = PeftModel.from_pretrained(lm.model, adapter_dir, is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError):
        raise DataRejected("the adapter does not fit the base model") from None
    mine = measure(adapted, lm.tokenizer, canaries, template, candidates=candidates, seed=seed)
    mia = None
    if sides:
        losses = [mean_losses(adapted, side, pad_id) for side in sides]
        mia = text_mia(base_losses[0], base_losses[1], losses[0], losses[1], seed=seed)
    record = read_record(adapter_dir / WEIGHTS_FILE)
    return CanaryReport(candidates=candidates, space_bits=candidate_space_bits(),
                        max_exposure=math.log2(candidates + 1), adapter=tuple(mine),
                        base=tuple(base),
                        dp_epsilon=record.epsilon if record is not None else None, mia=mia)


def write_report(report: CanaryReport, out_dir: Path) -> Path:
    """Write the JSON report (atomic) and the PNG plot into `out_dir`; return the JSON path.

    Raises DataRejected when the folder cannot be written.
    """
    from secure_trainer.llm.canary_plot import draw_exposure

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".{REPORT_FILE}.tmp"
        tmp.write_text(report.to_json(), encoding="utf-8")
        os.replace(tmp, out_dir / REPORT_FILE)
        draw_exposure(report, out_dir / PLOT_FILE)
    except OSError:
        raise DataRejected("could not write the canary report (is --out writable?)") from None
    return out_dir / REPORT_FILE
