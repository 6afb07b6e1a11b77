"""Write a PEFT LoRA adapter (`adapter_config.json` + `adapter_model.safetensors`) atomically.

Each file is written under a temporary name in the output folder and renamed into place, the
weights last, so a reader never sees a half-written adapter. The config's
`base_model_name_or_path` and `revision` are cleared (they would name a local path); the
safetensors metadata holds only hyper-parameters and DP figures (redacted: no data counts).
Never writes the base weights, a path or anything derived from the records' text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from secure_trainer.errors import TrainingError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def _jsonable(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "value"):  # enums (PeftType, TaskType)
        return value.value
    raise TypeError(type(value).__name__)


def adapter_config(peft_model: Any) -> dict[str, object]:
    """The adapter's peft config as a JSON-ready dict, with path-like fields cleared."""
    config: dict[str, object] = dict(peft_model.peft_config["default"].to_dict())
    # SECURITY: the base model's local path would leave the workspace with the adapter.
    config["base_model_name_or_path"] = None
    config["revision"] = None
    return config


def _replace_into(folder: Path, name: str, write: Any) -> None:
    tmp = folder / f".{name}.tmp"
    write(tmp)
    os.replace(tmp, folder / name)


def save_adapter(peft_model: Any, out_dir: Path, metadata: Mapping[str, str]) -> Path:
    """Write the adapter into `out_dir` (created if missing); return the weights path.

    Raises TrainingError when the folder cannot be written.
    """
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float32).contiguous().cpu()
             for k, v in get_peft_model_state_dict(peft_model).items()}
    config_text = json.dumps(adapter_config(peft_model), indent=2, sort_keys=True,
                             default=_jsonable) + "\n"
    meta = {"format": "pt", **metadata}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _replace_into(out_dir, CONFIG_FILE, lambda p: p.write_text(config_text, "utf-8"))
        _replace_into(out_dir, WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata=meta))
    except OSError:
        raise TrainingError("could not write the adapter (is output_dir writable?)") from None
    return out_dir / WEIGHTS_FILE
