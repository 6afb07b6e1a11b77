"""Read TensorBoard event files with tensorboardX's protos only (no tensorboard install).

An event file is a sequence of TFRecords: little-endian u64 length, masked CRC-32C of the length,
the serialized `Event`, masked CRC-32C of the data. Every CRC is checked, so a torn or edited
file fails the test instead of reading as fewer scalars. Must never: depend on tensorboard.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tensorboardX.crc32c import crc32c
from tensorboardX.proto.event_pb2 import Event


def _masked(data: bytes) -> int:
    """TFRecord's masked CRC-32C."""
    crc = int(crc32c(data))
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def events(path: Path) -> list[Event]:
    """Every `Event` of one event file, CRCs verified."""
    raw = path.read_bytes()
    out: list[Event] = []
    pos = 0
    while pos < len(raw):
        header = raw[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", raw[pos + 8:pos + 12])
        assert header_crc == _masked(header), f"bad length CRC at byte {pos}"
        data = raw[pos + 12:pos + 12 + length]
        (data_crc,) = struct.unpack("<I", raw[pos + 12 + length:pos + 16 + length])
        assert len(data) == length and data_crc == _masked(data), f"bad record at byte {pos}"
        event = Event()
        event.ParseFromString(data)
        out.append(event)
        pos += 16 + length
    return out


def scalars(run_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], set[str]]:
    """Scalars per tag (step, value) of every event file in `run_dir`, and the kinds of any
    other summary value found (image, tensor, histo, ...), which our trainer must never write."""
    found: dict[str, list[tuple[int, float]]] = {}
    other: set[str] = set()
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in events(path):
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    found.setdefault(value.tag, []).append((event.step, value.simple_value))
                else:
                    other.add(str(kind))
    return found, other
