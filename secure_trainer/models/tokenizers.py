"""CLIP tokenizers for single-file checkpoints that embed none: a given folder or the offline cache.

Never downloads (local files only) and never names a path in an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from secure_trainer.errors import ConfigError

CLIP_TOKENIZER_REPO = "openai/clip-vit-large-patch14"


def require_tokenizer(tokenizer_dir: Path | None) -> Any:
    """Tokenizer for a single file without an embedded one: a given folder, else the HF cache.

    Raises ConfigError when neither is available (nothing is ever downloaded).
    """
    from transformers import CLIPTokenizer

    try:
        if tokenizer_dir is not None:
            # transformers 5 builds an empty tokenizer from a folder without vocab files.
            if not all((Path(tokenizer_dir) / f).is_file() for f in ("vocab.json", "merges.txt")):
                raise OSError("no tokenizer files")
            return CLIPTokenizer.from_pretrained(Path(tokenizer_dir), local_files_only=True)
        return CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_REPO, local_files_only=True)
    except (OSError, ValueError):
        raise ConfigError(
            "this single-file checkpoint carries no tokenizer: use the model's diffusers folder, "
            f"or put {CLIP_TOKENIZER_REPO} in the offline Hugging Face cache") from None
