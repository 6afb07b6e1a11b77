"""`IsolatedDecoder`: the sanitizer's `Decoder` run in a forked child without privileges.

`data import` / `data sanitize` run as root and hold the pseudonym key; the images they import
are untrusted input for Pillow, lcms and OpenCV. `start()` — called before the key is read —
forks a zygote (entrypoint/decode/worker.py) that drops to the training uid (`PreparedDrop`,
prepared before the fork: no groups, empty capability sets, no_new_privs, RLIMIT_CORE 0), gets
a parent-death SIGKILL, its own session, cwd `/`, an empty environment and only two pipes;
before the drop it enters a new network namespace where it may, after it a seccomp filter that
refuses sockets, exec, ptrace, mounts and namespaces (entrypoint/decode/confine.py).
The zygote forks one grandchild per image to decode it. The supervisor reads each source file
and writes each result; the decoder gets bytes only. A grandchild that crashes, runs out of its
memory limit or misses the per-image deadline costs that one file (`decoder_crashed` /
`decoder_timeout`, counted).
A fork rather than a fresh interpreter: the decoding code is already loaded, so the training
uid needs no read access to the Python runtime (natively it often has none).
`IsolatedDecoder.unprivileged_fallback()` (not root, or ST_TRAIN_UID=none) is the same forked
zygote and limits without a uid change.
SECURITY: never forks after the pseudonym key is loaded (the zygote is not restarted: if it
dies, every later file is rejected), never passes a path, a name or a key to the child, never
trusts what the child returns beyond its shape (reasons from a fixed set, bounded sizes, the
output re-checked for format and metadata), never blocks on the child past a deadline.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Self

from PIL import Image

from entrypoint.decode.confine import PreparedConfinement
from entrypoint.decode.frames import FrameError, read_frame_until, write_frame_until
from entrypoint.decode.worker import MAX_EXTRA_FRAMES, MAX_HEADER, MAX_IMAGE_FRAME, serve
from entrypoint.errors import ConfigError
from entrypoint.run.trainer_child import child_preexec
from secure_trainer.privacy.dicom.decode import warm_up_dicom
from secure_trainer.privacy.image_decode import (
    DecodedImage,
    DecodeRequest,
    DicomInfo,
    ImageRejected,
    RejectReason,
    decode_image,
)
from secure_trainer.privacy.imagemeta import inspect_bytes

__all__ = ["DEFAULT_MEMORY_BYTES", "DEFAULT_TIMEOUT_S", "IsolatedDecoder", "decode_ids_from_env"]

DEFAULT_TIMEOUT_S = 120.0  # per image: a 64 Mpx image with face blur on a slow CPU
DEFAULT_MEMORY_BYTES = 6 << 30  # per decode, on top of the fork: 64 Mpx RGBA is 256 MiB a copy
_STARTUP_TIMEOUT_S = 30.0
_RELAY_MARGIN_S = 30.0  # the zygote's own deadline comes first; ours only catches a dead zygote
_MAX_FACES = 100_000
_MAX_DICOM_TEXT = 4096
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_REASONS = {r.value: r for r in RejectReason}
_EXIT_SETUP_FAILED = 70


def decode_ids_from_env(env: Mapping[str, str]) -> tuple[int, int] | None:
    """The (uid, gid) the decoder drops to: ST_TRAIN_UID/ST_TRAIN_GID (default 10001), or None
    when not root or ST_TRAIN_UID=none (then the unprivileged fallback). Raises ConfigError."""
    raw = env.get("ST_TRAIN_UID", "10001")
    if raw == "none" or os.geteuid() != 0:
        return None
    try:
        uid = int(raw)
        gid = int(env.get("ST_TRAIN_GID", str(uid)))
    except ValueError:
        raise ConfigError("ST_TRAIN_UID/ST_TRAIN_GID must be numbers or 'none'") from None
    if uid == 0 or gid == 0:
        raise ConfigError("ST_TRAIN_UID/ST_TRAIN_GID must not be 0 (root)")
    return uid, gid


def _warm_up(request: DecodeRequest) -> None:
    """Load every module and plugin the decoder will need, in the parent, before the fork:
    the dropped child may not be able to read the Python runtime's files."""
    if request.blur_faces or request.find_faces:
        import cv2

        # A fork copies only the calling thread: OpenCV's worker pool would be gone in the
        # child while OpenCV still counted on it. Run its loops in the calling thread.
        cv2.setNumThreads(0)
    Image.init()  # every format plugin
    sample = Image.new("RGB", (16, 16), (120, 80, 40))
    for fmt in ("PNG", "JPEG", "WEBP", "BMP"):
        buf = io.BytesIO()
        try:
            sample.save(buf, fmt)
            decode_image(buf.getvalue(), request)
        except (OSError, KeyError, ImageRejected):
            continue  # a format this Pillow lacks: its files are rejected, as in-process
    warm_up_dicom(request)  # pydicom loads its pixel handlers lazily


class IsolatedDecoder:
    """A `Decoder` (callable: bytes, DecodeRequest -> DecodedImage) backed by a forked child.

    Call `start(request)` before any secret is loaded, and use as a context manager (the child
    is stopped on exit). Raises ConfigError when the child cannot start (every file would
    fail); ImageRejected for one bad file.
    """

    def __init__(self, ids: tuple[int, int] | None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        """`ids`: drop to (uid, gid); None only through `unprivileged_fallback()`."""
        self.ids = ids
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self._pid: int | None = None
        self._to_child: int | None = None
        self._from_child: int | None = None
        self._request: DecodeRequest | None = None
        self._dead = False
        self.network_isolated: bool | None = None
        """After `start`: whether the zygote got its own network namespace (False where
        namespaces are refused, e.g. the image's seccomp profile; the filter still denies
        sockets)."""

    @classmethod
    def unprivileged_fallback(cls, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                              memory_bytes: int = DEFAULT_MEMORY_BYTES) -> IsolatedDecoder:
        """Same forked child, limits and deadline, but no uid change (not root, or
        ST_TRAIN_UID=none): the decoder still runs apart from the files and the key."""
        return cls(None, timeout_s=timeout_s, memory_bytes=memory_bytes)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IsolatedDecoder:
        """Dropped to ST_TRAIN_UID when root, else the unprivileged fallback."""
        ids = decode_ids_from_env(env)
        return cls(ids) if ids is not None else cls.unprivileged_fallback()

    @property
    def pid(self) -> int | None:
        """The zygote's pid (its children decode), or None."""
        return self._pid

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self, request: DecodeRequest) -> None:
        """Fork the zygote for `request`. Call it before the pseudonym key is read.

        Raises ConfigError when it cannot start. A no-op when already started.
        """
        if self._pid is not None or self._dead:
            return
        _warm_up(request)
        setup = child_preexec(self.ids)  # PreparedDrop + parent-death SIGKILL, built before fork
        try:
            confine = PreparedConfinement()  # libc and the BPF program, built before fork
        except OSError:
            raise ConfigError("the image decoder cannot be confined on this architecture") from None
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the zygote: never returns
            code = _EXIT_SETUP_FAILED
            try:
                os.setsid()  # a terminal's signals reach the supervisor only
                os.dup2(to_r, 0)
                os.dup2(from_w, 1)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 2)
                os.closerange(3, 1 << 16)  # no fd of the supervisor's (source, workspace)
                netns = confine.isolate_network()  # still root here: needs CAP_SYS_ADMIN
                setup()
                confine.apply_seccomp()  # after the drop: inherited by every decode fork
                os.chdir("/")
                os.environ.clear()  # also unsets the C environment
                code = serve(request, self.memory_bytes, self.timeout_s, netns=netns)
            finally:
                os._exit(code)
        os.close(to_r)
        os.close(from_w)
        os.set_blocking(to_w, False)  # a child that stops reading cannot hold us
        self._pid, self._to_child, self._from_child = pid, to_w, from_r
        self._request = request
        try:
            ready = json.loads(read_frame_until(from_r, MAX_HEADER,
                                                time.monotonic() + _STARTUP_TIMEOUT_S))
        except (FrameError, ValueError):
            ready = None
        if not isinstance(ready, dict) or ready.get("ready") is not True:
            self._kill()
            raise ConfigError("the image decoder process could not start")
        self.network_isolated = ready.get("netns") is True

    def close(self) -> None:
        """Stop the zygote: end of input, then SIGKILL after a grace period; reap it."""
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        self._close_pipes()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

    def _close_pipes(self) -> None:
        for fd in (self._to_child, self._from_child):
            if fd is not None:
                os.close(fd)
        self._to_child = self._from_child = None

    def _kill(self) -> None:
        """The zygote misbehaved or died: stop it; every later file is rejected."""
        self._dead = True
        pid, self._pid = self._pid, None
        self._close_pipes()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)

    def __call__(self, raw: bytes, request: DecodeRequest) -> DecodedImage:
        """Decode `raw` in a child. Raises ImageRejected (this file), ConfigError (no child)."""
        if self._pid is None and not self._dead:
            self.start(request)
        if self._dead or self._to_child is None or self._from_child is None:
            raise ImageRejected(RejectReason.DECODER_CRASHED)
        if request != self._request:
            raise ConfigError("the image decoder was started for other options")
        deadline = time.monotonic() + self.timeout_s + _RELAY_MARGIN_S
        try:
            write_frame_until(self._to_child, raw, deadline)
            header = json.loads(read_frame_until(self._from_child, MAX_HEADER, deadline))
            data = None
            if isinstance(header, dict) and header.get("ok") is True:
                more = header.get("frames", 0)
                if not isinstance(more, int) or not 0 <= more <= MAX_EXTRA_FRAMES:
                    raise ValueError("bad frame count")
                data = [read_frame_until(self._from_child, MAX_IMAGE_FRAME, deadline)
                        for _ in range(1 + more)]
        except (FrameError, ValueError):
            self._kill()
            raise ImageRejected(RejectReason.DECODER_CRASHED) from None
        return self._checked(header, data, request)

    def _checked(self, header: object, data: list[bytes] | None,
                 request: DecodeRequest) -> DecodedImage:
        """The child's answer, trusted only after its shape and the output are checked."""
        if not isinstance(header, dict):
            self._kill()
            raise ImageRejected(RejectReason.DECODER_CRASHED)
        if header.get("ok") is False:
            reason = _REASONS.get(str(header.get("reason")))
            if reason is None:
                self._kill()
                raise ImageRejected(RejectReason.DECODER_CRASHED)
            raise ImageRejected(reason)
        kinds, faces = header.get("kinds"), header.get("faces")
        found = header.get("faces_found", 0)
        dicom = _dicom_info(header.get("dicom"))
        if (not data or dicom is False or not isinstance(kinds, list) or not isinstance(faces, int)
                or not 0 <= faces <= _MAX_FACES
                or not isinstance(found, int) or not 0 <= found <= _MAX_FACES
                or not all(isinstance(k, str) and _KIND_RE.match(k) for k in kinds)):
            self._kill()
            raise ImageRejected(RejectReason.DECODER_CRASHED)
        # Fail closed even against a subverted child: the result must be the requested
        # format and carry no metadata (a header-only parse, no pixel decoding here).
        # A DICOM source is always rendered to PNG (one per frame).
        fmt = "png" if dicom is not None else request.output_format
        for frame in data:
            meta = inspect_bytes(frame)
            if meta.format != fmt or meta.has_any:
                raise ImageRejected(RejectReason.METADATA_SURVIVED)
        return DecodedImage(data=data[0], metadata_kinds=tuple(kinds), faces=faces,
                            faces_found=found,
                            frames=tuple(data[1:]),
                            dicom=dicom if isinstance(dicom, DicomInfo) else None)


def _dicom_info(raw: object) -> DicomInfo | None | bool:
    """The child's DICOM report by shape: None when absent, False when malformed."""
    if raw is None:
        return None
    if (not isinstance(raw, dict) or set(raw) != {"patient_id", "caption"}
            or not all(isinstance(v, str) and len(v) <= _MAX_DICOM_TEXT for v in raw.values())):
        return False
    return DicomInfo(patient_id=raw["patient_id"], caption=raw["caption"])
