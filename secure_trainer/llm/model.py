"""Load a local causal LM and its tokenizer safely: safetensors only, offline, no remote code.

Before any Hugging Face loader runs, the folder is checked: it must be a local directory, must
not hold a pickle weight file (`.bin`, `.pt`, ...: refused, exit 8) and every `.safetensors`
header is validated (bounded, no overlaps). Loaders then run with `local_files_only`,
`use_safetensors` and `trust_remote_code=False`. Never downloads, never unpickles, never puts a
path in an error message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.models.safetensors_check import PICKLE_MESSAGE, PICKLE_SUFFIXES, read_header


@dataclass(frozen=True)
class LoadedLm:
    """The base model (float32, eval mode, frozen) and its tokenizer."""

    model: Any
    tokenizer: Any


def check_model_dir(path: Path) -> list[Path]:
    """Validate a model folder; return its safetensors files.

    Raises ConfigError when `path` is not a local folder (hub ids are never resolved) and
    DataRejected for a pickle weight file, no safetensors weights or a malformed header.
    """
    if not path.is_dir():
        raise ConfigError("option 'model_name_or_path' must be a local model folder "
                          "(hub downloads are disabled)")
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if any(p.suffix.lower() in PICKLE_SUFFIXES for p in files):
        raise DataRejected(PICKLE_MESSAGE)
    weights = [p for p in files if p.suffix == ".safetensors"]
    if not weights:
        raise DataRejected("the model folder has no .safetensors weights")
    for weight in weights:
        read_header(weight)
    return weights


def load_tokenizer(path: Path) -> Any:
    """The folder's tokenizer (fast, local only). Raises DataRejected when it cannot load."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True,
                                                  trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError):
        raise DataRejected("could not load the tokenizer of the model folder") from None
    if not getattr(tokenizer, "is_fast", False):
        raise DataRejected("the model needs a fast tokenizer (tokenizer.json)")
    if tokenizer.pad_token_id is None:
        # Padding positions are masked out of attention and loss, so any id is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_lm(path: Path) -> LoadedLm:
    """Check the folder, then load model (float32, frozen) and tokenizer.

    Raises ConfigError / DataRejected as `check_model_dir`, DataRejected when loading fails.
    """
    import torch
    from transformers import AutoModelForCausalLM

    check_model_dir(path)
    tokenizer = load_tokenizer(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, use_safetensors=True, trust_remote_code=False,
            dtype=torch.float32)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        raise DataRejected("could not load the model (a causal LM folder with safetensors "
                           "weights is expected)") from None
    model.requires_grad_(False)
    model.eval()
    return LoadedLm(model=model, tokenizer=tokenizer)
