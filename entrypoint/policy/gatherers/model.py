"""Model facts: the on-disk format of the base model, the VAE and the LoRA weights to resume.

Classifies weight files by their first bytes (safetensors header vs pickle / torch zip); never
unpickles, never loads tensors, never puts a path or file name into a fact.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from entrypoint.errors import ConfigError
from entrypoint.policy.context import PolicyContext
from entrypoint.policy.facts import ModelFacts

__all__ = ["WEIGHT_SUFFIXES", "file_format", "gather"]

WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle"})
_MAX_HEADER = 100 * 1024 * 1024  # safetensors caps its JSON header at 100 MB
_MAX_WALK_FILES = 10_000


def file_format(path: Path) -> str:
    """`safetensors`, `pickle` (pickle protocol ≥2 or a torch zip archive), `unknown`, `missing`."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unknown"
    if len(head) == 9:
        (length,) = struct.unpack("<Q", head[:8])
        if 2 <= length <= _MAX_HEADER and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04":
        return "pickle"
    return "unknown"


def _weight_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for path in folder.rglob("*"):
        if path.suffix.lower() in WEIGHT_SUFFIXES and path.is_file():
            found.append(path)
            if len(found) >= _MAX_WALK_FILES:
                break
    return found


def _is_diffusers(folder: Path) -> bool:
    try:
        return isinstance(json.loads((folder / "model_index.json").read_text()), dict)
    except (OSError, ValueError):
        return False


def _classify(path: Path) -> tuple[str, int, int]:
    """(format, pickle files, weight files) of a base model file or folder."""
    if path.is_file():
        fmt = file_format(path)
        return fmt, int(fmt == "pickle"), 1
    if not path.is_dir():
        return "missing", 0, 0
    formats = [file_format(p) for p in _weight_files(path)]
    pickles = sum(1 for f in formats if f in ("pickle", "unknown"))
    safe = sum(1 for f in formats if f == "safetensors")
    if not _is_diffusers(path) or not formats:
        return "unknown", pickles, len(formats)
    if pickles == 0:
        return "diffusers-safetensors", 0, len(formats)
    return ("diffusers-mixed" if safe else "diffusers-pickle"), pickles, len(formats)


def _optional(path: Path | None) -> tuple[str | None, int]:
    if path is None:
        return None, 0
    fmt, pickles, _ = _classify(path)
    if fmt.startswith("diffusers-"):
        fmt = "safetensors" if fmt == "diffusers-safetensors" else "pickle"
    return fmt, pickles


def gather(ctx: PolicyContext) -> ModelFacts:
    """Facts about the weights the run will load. Raises ConfigError without ctx.train."""
    from secure_trainer.settings import TrainSettings

    # coupling: preflight gathers `model` only with settings; train-llm's are gatherers/text.py
    if not isinstance(ctx.train, TrainSettings):
        raise ConfigError("model facts need the trainer settings")
    fmt, pickles, weights = _classify(Path(ctx.train.pretrained_model_name_or_path))
    vae_fmt, vae_pickles = _optional(ctx.train.vae)
    net_fmt, net_pickles = _optional(ctx.train.network.network_weights)
    return ModelFacts(format=fmt, pickle_files=pickles + vae_pickles + net_pickles,
                      weight_files=weights, vae_format=vae_fmt, network_weights_format=net_fmt)
