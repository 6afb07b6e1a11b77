"""Write and read Kohya-format LoRA `.safetensors` files (`lora_unet_*`/`lora_te_*`, SDXL `lora_te1_*`/`lora_te2_*`).

Keys are `<kohya module name>.lora_down.weight` (peft lora_A), `.lora_up.weight` (lora_B) and
`.alpha` (0-d); every tensor has the one save dtype; metadata values are strings; writes are
atomic (temp file in the target folder, fsync, rename). Never writes pickles, never loads a file
whose header was not validated, never puts a path in an error message.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from secure_trainer.errors import ConfigError, DataRejected, TrainingError
from secure_trainer.kohya.metadata import build_metadata
from secure_trainer.models.lora import LoraHandles
from secure_trainer.models.safetensors_check import read_header, validate_file
from secure_trainer.settings import SavePrecision

__all__ = ["KEY_RE", "LoadReport", "build_metadata", "canonical_header", "data_region_sha256", "kohya_state_dict",
           "load_kohya_into", "save_dtype", "save_lora", "serialize_lora"]

KEY_RE = re.compile(
    r"^lora_(unet|te|te1|te2)_[A-Za-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$")
SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")
_DTYPES: dict[str | None, torch.dtype] = {
    None: torch.float32, "float": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def save_dtype(precision: SavePrecision | None) -> torch.dtype:
    """Kohya's `--save_precision` as a torch dtype (unset ⇒ float32, the LoRA training dtype)."""
    return _DTYPES[precision]


def kohya_state_dict(handles: LoraHandles, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The adapters as a Kohya state dict: down/up weights and a 0-d alpha per module, all `dtype`.

    Tensors are detached CPU copies (meta tensors, used to check shapes, stay on meta).
    """
    out: dict[str, torch.Tensor] = {}
    for name, (layer, _kind) in handles.modules.items():
        down = layer.lora_A[handles.adapter].weight.detach()
        up = layer.lora_B[handles.adapter].weight.detach()
        for suffix, tensor in ((".lora_down.weight", down), (".lora_up.weight", up)):
            device = tensor.device if tensor.is_meta else torch.device("cpu")
            out[name + suffix] = tensor.to(device=device, dtype=dtype).contiguous()
        out[name + ".alpha"] = torch.tensor(handles.alpha(name), dtype=dtype)
    return out


def _check_lora_tensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) > 1:
        raise TrainingError("LoRA tensors must share one dtype")
    bad = [k for k in tensors if not KEY_RE.match(k)]
    if bad:
        raise TrainingError("LoRA state dict has keys outside the Kohya layout")
    modules = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in tensors}
    for module in modules:
        if any(module + s not in tensors for s in SUFFIXES):
            raise TrainingError("every LoRA module needs lora_down, lora_up and alpha")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TrainingError("LoRA metadata values must be strings")


def canonical_header(blob: bytes) -> bytes:
    """Re-emit serialized safetensors with a key-sorted, compact JSON header.

    The reference writer keeps metadata in a hash map, so key order (not content) changes from
    run to run; sorting makes equal inputs give byte-identical files. Data offsets are relative
    to the data region, so the tensor bytes are reused unchanged.
    """
    import json

    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_len])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob[8 + header_len:]


def data_region_sha256(blob: bytes) -> str:
    """sha256 of the tensor-data region of serialized safetensors (sd-scripts' sshs_model_hash)."""
    (header_len,) = struct.unpack("<Q", blob[:8])
    return hashlib.sha256(blob[8 + header_len:]).hexdigest()


def _legacy_hash(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    # sd-scripts' sshs_legacy_hash: first 8 hex of sha256 over 64 KiB at 1 MiB of a serialization
    # that carries only the ss_* metadata.
    from safetensors.torch import save

    blob = save(dict(tensors), metadata={k: v for k, v in metadata.items() if k.startswith("ss_")})
    return hashlib.sha256(blob[0x100000:0x110000]).hexdigest()[:8]


def serialize_lora(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """Safetensors bytes of a LoRA with `sshs_model_hash` (and, when the FULL metadata set is
    present, `sshs_legacy_hash`) added. Raises TrainingError for a malformed state dict."""
    from safetensors.torch import save

    _check_lora_tensors(tensors, metadata)
    plain = {k: v.contiguous() for k, v in tensors.items()}
    meta = dict(metadata)
    meta["sshs_model_hash"] = data_region_sha256(save(plain))
    if "ss_tag_frequency" in meta:  # FULL mode only: it is a hash of a private serialization
        meta["sshs_legacy_hash"] = _legacy_hash(plain, meta)
    blob = canonical_header(save(plain, metadata=meta))
    if data_region_sha256(blob) != meta["sshs_model_hash"]:
        raise TrainingError("safetensors data region changed with its header")  # pragma: no cover
    return blob


def save_lora(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """Atomically write a Kohya LoRA `.safetensors` to `path`; return its sshs_model_hash.

    The bytes go to a temp file in the same folder, are fsynced, then renamed over `path`
    (readers never see a partial file; a crash leaves at most a hidden temp file, removed on
    error). Raises ConfigError for a non-.safetensors name, TrainingError for a malformed state
    dict or a failed write.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError("LoRA files are written as .safetensors only (save_model_as)")
    blob = serialize_lora(tensors, metadata)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        Path(tmp_name).unlink(missing_ok=True)
        raise TrainingError("could not write the LoRA file (check free space and permissions)") from None
    return data_region_sha256(blob)


def read_lora(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a validated Kohya LoRA file. Raises DataRejected for pickles,
    malformed headers or keys outside the Kohya layout."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    header = validate_file(Path(path))
    if not all(KEY_RE.match(k) for k in header.tensors):
        raise DataRejected("not a Kohya LoRA file (keys outside lora_unet_/lora_te_ layout)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError):
        raise DataRejected("could not read the LoRA file's tensors") from None
    return tensors, header.metadata


@dataclass(frozen=True)
class LoadReport:
    """What `load_kohya_into` did."""

    loaded: int
    """Modules whose weights (and alpha) were copied."""
    missing: tuple[str, ...]
    """Injected modules the file has no weights for (they keep their current values)."""
    ignored: tuple[str, ...]
    """File modules for a part that is not being trained (e.g. lora_te_* with unet_only)."""


def load_kohya_into(handles: LoraHandles, path: Path, *, strict: bool = False) -> LoadReport:
    """Copy a Kohya LoRA file's weights and alphas into the injected adapters (--network_weights, resume).

    Raises DataRejected when the file is not a valid LoRA safetensors, names a module of a
    trained part that this network does not have, a shape differs, or (`strict`) a module is
    missing. Modules of parts that are not trained are ignored, as sd-scripts does.
    """
    tensors, _meta = read_lora(path)
    modules = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in tensors}
    parts = {t.part for t in handles.targets.values()}
    prefix_part = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
                   "lora_te2_": "text_encoder_2"}
    ignored: list[str] = []
    for module in sorted(modules):
        if module in handles.modules:
            continue
        part = next((p for pre, p in prefix_part.items() if module.startswith(pre)), None)
        if part is not None and part not in parts:
            ignored.append(module)
            continue
        raise DataRejected("LoRA file does not fit this model (unknown module names)")
    missing = tuple(n for n in handles.modules if n not in modules)
    if strict and missing:
        raise DataRejected("LoRA file lacks modules this network needs")
    loaded = 0
    with torch.no_grad():
        for name, (layer, _kind) in handles.modules.items():
            if name not in modules:
                continue
            down, up = tensors.get(name + ".lora_down.weight"), tensors.get(name + ".lora_up.weight")
            a_param = layer.lora_A[handles.adapter].weight
            b_param = layer.lora_B[handles.adapter].weight
            if down is None or up is None or down.shape != a_param.shape or up.shape != b_param.shape:
                raise DataRejected("LoRA file does not fit this network (rank or shape differs)")
            a_param.copy_(down.to(a_param.dtype))
            b_param.copy_(up.to(b_param.dtype))
            alpha = tensors.get(name + ".alpha")
            handles.set_alpha(name, float(alpha.item()) if alpha is not None else float(down.shape[0]))
            loaded += 1
    return LoadReport(loaded=loaded, missing=missing, ignored=tuple(ignored))


def check_written(path: Path) -> str:
    """Re-read a written LoRA and verify sshs_model_hash against its bytes; return the hash.
    Raises DataRejected if they disagree."""
    header = read_header(Path(path))
    with Path(path).open("rb") as fh:
        fh.seek(header.data_start)
        digest = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if header.metadata.get("sshs_model_hash") != digest.hexdigest():
        raise DataRejected("LoRA file hash does not match its contents")
    return digest.hexdigest()
