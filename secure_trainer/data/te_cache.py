"""`--cache_text_encoder_outputs_to_disk` for SDXL: frozen encoders' outputs, one file per caption.

sd-scripts writes `<image>_te_outputs.npz` next to each image. Here the cache lives in
`<output_dir>/<output_name>-te-cache/`, a folder the run already writes: under `run` the output
folder is inside the encrypted workspace (policy `training.paths_in_workspace`) and is sealed,
registered and erased with the run; source images may sit outside it or be read-only, so
nothing is ever written next to them. A later run with the same output folder and name reuses
the files it can prove valid.

Each file is safetensors (never pickle) named by the SHA-256 of its key — format version, the
text encoders' weights hash, the autocast precision, device type, `max_token_length` and the
caption — and it carries that key in its metadata: a file made for another model, precision or
caption never matches, and one that does not parse, lacks its key or holds non-finite values is
recomputed and replaced.
SECURITY: captions are private data; they never appear in a file name, the metadata (only
their hash) or a message. Files are 0600, created with O_EXCL|O_NOFOLLOW under a temporary
name and renamed into place; a cache folder that is a symlink is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from secure_trainer.errors import TrainingError
from secure_trainer.models.sdxl_text import TextCache

FORMAT = "secure-trainer/te-cache/1"
SUFFIX = ".tecache"  # safetensors inside; not `.safetensors`, which the registry counts as a LoRA
Compute = Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]


def cache_dir_for(output_dir: Path, output_name: str) -> Path:
    """The run's text-encoder cache folder: `<output_dir>/<output_name>-te-cache`."""
    return output_dir / f"{output_name}-te-cache"


def encoders_digest(*modules: Any) -> str:
    """SHA-256 over the frozen base weights of `modules` (names, dtypes, shapes, bytes).

    LoRA tensors are left out: cached outputs are only used while the encoders do not train.
    """
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            if "lora_" in name:
                continue
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}\n".encode())
            digest.update(memoryview(flat.view(torch.uint8).numpy()))
    return digest.hexdigest()


@dataclass
class DiskTextCache:
    """The in-memory `TextCache` backed by one file per caption in `folder`.

    `context` is what else the outputs depend on (model digest, precision, device, token
    length); `get` has `TextCache.get`'s contract. `reused`/`written` count files.
    """

    folder: Path
    context: str
    memory: TextCache = field(default_factory=TextCache)
    reused: int = 0
    written: int = 0

    def __post_init__(self) -> None:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = os.lstat(self.folder).st_mode
        except OSError:
            raise TrainingError("the text-encoder cache folder could not be created") from None
        if not stat.S_ISDIR(mode):
            raise TrainingError("the text-encoder cache folder is not a plain folder")

    def key(self, caption: str) -> str:
        """The cache key of one caption (hex SHA-256; also the file's stem)."""
        return hashlib.sha256(f"{FORMAT}\0{self.context}\0{caption}".encode()).hexdigest()

    def get(self, captions: list[str], compute: Compute) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked (context, pooled) for `captions`: memory, then valid files, then `compute`
        (whose results are written). Raises TrainingError when a file cannot be written."""
        for caption in dict.fromkeys(captions):
            if caption not in self.memory.entries:
                loaded = self._load(self.key(caption))
                if loaded is not None:
                    self.memory.entries[caption] = loaded
                    self.reused += 1
        fresh = [c for c in dict.fromkeys(captions) if c not in self.memory.entries]
        result = self.memory.get(captions, compute)
        for caption in fresh:
            self._store(self.key(caption), *self.memory.entries[caption])
        return result

    def _load(self, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        from safetensors import SafetensorError
        from safetensors.torch import load

        path = self.folder / f"{key}{SUFFIX}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None  # absent (or a link): compute it
        try:
            with os.fdopen(fd, "rb") as fh:
                raw = fh.read()
            tensors = load(raw)
            meta = _metadata(raw)
        except (OSError, SafetensorError, ValueError):
            return None
        hidden, pooled = tensors.get("hidden"), tensors.get("pooled")
        if meta.get("key") != key or hidden is None or pooled is None:
            return None
        if not all(t.is_floating_point() and math.isfinite(float(t.float().abs().sum()))
                   for t in (hidden, pooled)):
            return None
        return hidden, pooled

    def _store(self, key: str, hidden: torch.Tensor, pooled: torch.Tensor) -> None:
        from safetensors.torch import save

        data = save({"hidden": hidden.detach().cpu().contiguous(),
                     "pooled": pooled.detach().cpu().contiguous()},
                    metadata={"format": FORMAT, "key": key})
        final = self.folder / f"{key}{SUFFIX}"
        temp = self.folder / f".{key}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(temp, final)  # replaces a stale file (or a planted link) itself
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise TrainingError("could not write the text-encoder cache") from None
        self.written += 1


def _metadata(raw: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors byte string (ValueError when malformed)."""
    import json

    if len(raw) < 8:
        raise ValueError("short")
    size = int.from_bytes(raw[:8], "little")
    if size > len(raw) - 8:
        raise ValueError("header")
    header = json.loads(raw[8:8 + size])
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def text_cache_for(settings: Any, base: Any, device: torch.device) -> TextCache | DiskTextCache | None:
    """The SDXL text-encoder cache a run asked for: None, in memory, or on disk."""
    if not settings.cache_text_encoder_outputs:
        return None
    folder = getattr(settings, "text_encoder_cache_dir", None)
    if folder is None:
        return TextCache()
    context = "|".join([encoders_digest(base.text_encoder, base.text_encoder_2),
                        str(settings.mixed_precision), device.type,
                        str(settings.max_token_length)])
    return DiskTextCache(Path(folder), context)
