"""Refuse pickle checkpoints and validate safetensors headers before any loader touches a file.

A hostile header can claim gigabytes of metadata or tensors that overlap or run past the end
of the file; a pickle can run code when loaded. This module reads only the first bytes and the
header JSON (bounded), never unpickles anything, and never puts a path in an error message.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from secure_trainer.errors import DataRejected

MAX_HEADER_BYTES = 100 * 1024 * 1024
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"})
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
PICKLE_MESSAGE = (
    "refusing a pickle checkpoint (.ckpt/.pt/.pth/.bin): unpickling can run arbitrary code; "
    "convert the model to .safetensors (in an isolated sandbox) and pass that instead"
)


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    """Offset of the first byte, relative to the start of the data region."""
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header: tensors, string metadata and where the data region starts."""

    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]
    data_start: int
    """8 + header length: the byte offset of the data region in the file."""
    file_size: int


def _malformed(reason: str) -> DataRejected:
    return DataRejected(f"malformed safetensors header: {reason}")


def looks_like_pickle(head: bytes) -> bool:
    """True when `head` (the first bytes of a file) starts like a zip (torch) or a pickle stream."""
    if head.startswith(b"PK\x03\x04"):
        return True
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def refuse_pickle(path: Path) -> None:
    """Raise DataRejected (exit 8) if `path` is a pickle by suffix or by its first bytes."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise DataRejected(PICKLE_MESSAGE)
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(8)
        if looks_like_pickle(head):
            raise DataRejected(PICKLE_MESSAGE)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _malformed("duplicate key")
        out[key] = value
    return out


def _entry(name: str, raw: object, data_len: int) -> TensorEntry:
    if not isinstance(raw, dict) or set(raw) != {"dtype", "shape", "data_offsets"}:
        raise _malformed("tensor entry must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = raw["dtype"], raw["shape"], raw["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise _malformed("unknown dtype")
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _malformed("shape must be a list of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise _malformed("data_offsets must be two integers")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise _malformed("data offsets out of range")
    if end - begin != math.prod(shape) * DTYPE_SIZES[dtype]:
        raise _malformed("byte length does not match dtype and shape")
    del name
    return TensorEntry(dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def read_header(path: Path) -> SafetensorsHeader:
    """Read and validate the header of a `.safetensors` file; return its parsed form.

    Checks: pickle refusal first; header length ≤ 100 MiB and inside the file; UTF-8 JSON
    object without duplicate keys; `__metadata__` maps strings to strings; every tensor has a
    known dtype, a non-negative shape and offsets inside the data region whose length equals
    dtype size × element count; tensors do not overlap and cover the data region exactly (the
    same rule the reference Rust reader enforces). Raises DataRejected on any failure.
    """
    refuse_pickle(path)
    try:
        file_size = path.stat().st_size
        with path.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise _malformed("file too short")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES:
                raise _malformed("header length over the 100 MiB limit")
            if 8 + header_len > file_size:
                raise _malformed("header length past the end of the file")
            raw = fh.read(header_len)
    except OSError:
        raise DataRejected("cannot read a model file (check that it exists and is readable)") from None
    try:
        parsed = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _malformed("header is not UTF-8 JSON") from None
    if not isinstance(parsed, dict):
        raise _malformed("header is not a JSON object")
    metadata_raw = parsed.pop("__metadata__", {})
    if not isinstance(metadata_raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata_raw.items()):
        raise _malformed("__metadata__ must map strings to strings")
    data_len = file_size - 8 - header_len
    tensors = {name: _entry(name, value, data_len) for name, value in parsed.items()}
    cursor = 0
    for entry in sorted(tensors.values(), key=lambda e: (e.begin, e.end)):
        if entry.begin < cursor:
            raise _malformed("tensor data regions overlap")
        if entry.begin > cursor:
            raise _malformed("gap in tensor data")
        cursor = entry.end
    if cursor != data_len:
        raise _malformed("data region size does not match the tensors")
    return SafetensorsHeader(tensors=tensors, metadata=dict(metadata_raw),
                             data_start=8 + header_len, file_size=file_size)


def validate_file(path: Path) -> SafetensorsHeader:
    """Refuse anything that is not a well-formed `.safetensors` file (DataRejected)."""
    if path.suffix.lower() != ".safetensors":
        refuse_pickle(path)
        raise DataRejected("model files must be .safetensors (or a diffusers folder of them)")
    return read_header(path)
