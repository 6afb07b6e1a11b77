"""The decoder side of `IsolatedDecoder`: a forked, unprivileged zygote and one fork per image.

`serve()` runs in the process `IsolatedDecoder.start()` forked (already dropped to the training
uid, its cwd `/`, an empty environment, only two pipes open). It parses nothing itself: for
each image frame it forks a fresh grandchild that decodes and re-encodes the bytes under an
address-space limit and answers through a private pipe; the zygote enforces the per-image
deadline, kills a grandchild that misses it, notices one that died, and relays a well-formed
answer (a JSON header frame, then the image frame when `ok`). A grandchild never sees another
image, so a hostile file cannot tamper with the next one.
SECURITY: never opens a file, never learns a path, a name or a key (the zygote is forked before
the pseudonym key is read); a crash costs one file, never the import.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import time

from entrypoint.decode.frames import FrameError, read_frame, read_frame_until, write_frame
from entrypoint.workspace.tether import ParentDeathSignal
from secure_trainer.privacy.decode_any import decode_any
from secure_trainer.privacy.image_decode import DecodeRequest, ImageRejected, RejectReason

__all__ = ["MAX_EXTRA_FRAMES", "MAX_HEADER", "MAX_IMAGE_FRAME", "serve"]

MAX_IMAGE_FRAME = 1 << 30  # both ways: sources are at most max_file_bytes, outputs are bounded
MAX_HEADER = 1 << 16
MAX_EXTRA_FRAMES = 4096  # further frames of one multi-frame DICOM source


def _address_space() -> int:
    """This process's current virtual size in bytes (what a fork inherits), 0 if unknown."""
    try:
        # Binary: a text codec may be a lazy import the dropped process cannot read.
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _decode_here(raw: bytes, request: DecodeRequest, limit: int, out_fd: int) -> None:
    """Grandchild: decode under the address-space `limit`, answer on `out_fd` (never returns)."""
    try:
        if limit > 0:
            # Address space, not RSS: a decompression bomb fails its allocation instead of
            # pushing the host into swap or the OOM killer.
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        data: bytes | None = None
        extra: tuple[bytes, ...] = ()
        try:
            img = decode_any(raw, request)
            header: dict[str, object] = {"ok": True, "kinds": list(img.metadata_kinds),
                                         "faces": img.faces, "faces_found": img.faces_found,
                                         "frames": len(img.frames)}
            if img.dicom is not None:
                header["dicom"] = {"patient_id": img.dicom.patient_id,
                                   "caption": img.dicom.caption}
            data, extra = img.data, img.frames
        except ImageRejected as rej:
            header = {"ok": False, "reason": rej.reason.value}
        except MemoryError:
            header = {"ok": False, "reason": RejectReason.TOO_LARGE.value}
        except Exception:  # noqa: BLE001 — any decoder failure rejects this one file
            header = {"ok": False, "reason": RejectReason.CORRUPT.value}
        with os.fdopen(out_fd, "wb") as fh:
            write_frame(fh, json.dumps(header).encode())
            if data is not None:
                write_frame(fh, data)
                for frame in extra:
                    write_frame(fh, frame)
    finally:
        os._exit(0)


def _one(raw: bytes, request: DecodeRequest, limit: int, timeout_s: float,
         tether: ParentDeathSignal) -> tuple[dict[str, object], list[bytes] | None]:
    """Zygote: decode `raw` in a fresh fork; the answer, or a crash/timeout reason."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:  # never return into the zygote's loop from here, whatever fails
            os.close(rfd)
            # Only its answer pipe: the zygote's pipes to the supervisor stay the zygote's.
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.close(null)
            tether.apply()  # the grandchild dies with the zygote
            _decode_here(raw, request, limit, wfd)
        finally:
            os._exit(0)
    os.close(wfd)
    deadline = time.monotonic() + timeout_s
    data: list[bytes] | None = None
    try:
        header = json.loads(read_frame_until(rfd, MAX_HEADER, deadline))
        if not isinstance(header, dict):
            raise TypeError("not an object")
        if header.get("ok") is True:
            more = header.get("frames", 0)
            if not isinstance(more, int) or not 0 <= more <= MAX_EXTRA_FRAMES:
                raise TypeError("bad frame count")
            data = [read_frame_until(rfd, MAX_IMAGE_FRAME, deadline) for _ in range(1 + more)]
    except FrameError as err:
        reason = RejectReason.DECODER_TIMEOUT if err.timed_out else RejectReason.DECODER_CRASHED
        header, data = {"ok": False, "reason": reason.value}, None
    except (ValueError, TypeError):
        header, data = {"ok": False, "reason": RejectReason.DECODER_CRASHED.value}, None
    finally:
        os.close(rfd)
        try:
            os.kill(pid, signal.SIGKILL)  # done or overdue: it has nothing left to do
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    return header, data


def serve(request: DecodeRequest, memory: int, timeout_s: float, *, netns: bool = False) -> int:
    """Zygote main loop on fds 0 (images in) and 1 (answers out) until fd 0 closes.

    `memory`: bytes each decode may allocate on top of what the fork inherits (0: no limit).
    `netns`: reported in the ready frame (whether the zygote has its own network namespace).
    """
    tether = ParentDeathSignal(signal.SIGKILL)  # libc loaded once, before any fork below
    # The supervisor's address space (Pillow, perhaps OpenCV and torch) comes with the fork;
    # the limit is a budget on top of it, so it means the same whatever was imported.
    limit = _address_space() + memory if memory > 0 else 0
    with os.fdopen(0, "rb") as inp, os.fdopen(1, "wb") as out:
        write_frame(out, json.dumps({"ready": True, "netns": netns}).encode())
        while (raw := read_frame(inp, MAX_IMAGE_FRAME)) is not None:
            header, data = _one(raw, request, limit, timeout_s, tether)
            write_frame(out, json.dumps(header).encode())
            for frame in data or ():
                write_frame(out, frame)
    return 0
