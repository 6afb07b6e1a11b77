"""Which model family a base model is, from its layout alone, and whether the flags agree.

A diffusers folder with `text_encoder_2` in model_index.json, or a single file with
`conditioner.embedders.1.*` tensors, is SDXL; SD2 single files (`cond_stage_model.model.*`)
are refused. Reads only model_index.json or the safetensors header, never tensor data; refuses
pickles before reading; never puts a path in an error message.
"""

from __future__ import annotations

import json
from pathlib import Path

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.models.families import Family
from secure_trainer.models.safetensors_check import read_header, refuse_pickle

SDXL_TE2_PREFIX = "conditioner.embedders.1."
SD2_TE_PREFIX = "cond_stage_model.model."


def detect_family(path: Path) -> Family:
    """`sdxl` or `sd15` for a diffusers folder or single-file `.safetensors`.

    Raises DataRejected for a missing path, a pickle, a malformed header or model_index.json,
    or an SD2.x single file.
    """
    path = Path(path)
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            raise DataRejected("not a diffusers folder (model_index.json missing)")
        try:
            components = json.loads(index.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DataRejected("model_index.json is not valid JSON") from None
        if not isinstance(components, dict):
            raise DataRejected("model_index.json is not valid JSON")
        return "sdxl" if "text_encoder_2" in components else "sd15"
    if path.is_file():
        refuse_pickle(path)
        keys = read_header(path).tensors
        if any(k.startswith(SDXL_TE2_PREFIX) for k in keys):
            return "sdxl"
        if any(k.startswith(SD2_TE_PREFIX) for k in keys):
            raise DataRejected("SD2.x checkpoints are not supported (SD1.x and SDXL are)")
        return "sd15"
    raise DataRejected("base model not found: pass a diffusers folder or a .safetensors file")


def check_family(family: Family, *, sdxl: bool, v2: bool = False) -> None:
    """Refuse Kohya flags that disagree with the detected family (one line, exit 2).

    `--sdxl` (sdxl_train_network.py) must come with an SDXL base and an SDXL base needs it;
    `--v2` names SD2.x, which neither family is. Raises ConfigError.
    """
    if v2:
        raise ConfigError(f"--v2 is for SD2.x models, but the base model is "
                          f"{'SDXL' if family == 'sdxl' else 'SD1.x'} (drop --v2)")
    if family == "sdxl" and not sdxl:
        raise ConfigError("the base model is SDXL: pass --sdxl (as for sdxl_train_network.py)")
    if family != "sdxl" and sdxl:
        raise ConfigError("--sdxl was given but the base model is SD1.x (drop --sdxl)")
