"""A decoder exploit gets no network and cannot start a program (entrypoint/decode/confine.py).

The exploit is stood in for by replacing the worker's `decode_any` before the zygote forks (the
fork copies it): the code then runs exactly where a Pillow/lcms/OpenCV/pydicom exploit would,
in a decode grandchild of the real, dropped, confined zygote. It tries a TCP connect to a
listener this test holds on loopback, a Unix socket, a program start and a user namespace, then
decodes normally and reports each outcome as a metadata "kind" (the only free-text channel the
supervisor accepts, by a fixed pattern). A benign decode through the same confinement gives
the same bytes as the in-process decoder.
"""

from __future__ import annotations

import ctypes
import errno
import io
import os
import socket
from pathlib import Path

import pytest
from PIL import Image

from entrypoint.decode import worker
from entrypoint.decode.isolated import IsolatedDecoder
from secure_trainer.privacy.decode_any import decode_any
from secure_trainer.privacy.image_decode import DecodedImage, DecodeRequest

pytestmark = [pytest.mark.integration, pytest.mark.root]
# A training uid of its own: a `run` elsewhere on the host SIGKILLs every process of its
# training uid (10001) when it ends.
TRAIN_IDS = (10089, 10089)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 90)).save(buf, "PNG")
    return buf.getvalue()


def _outcome(label: str, attempt: object) -> str:
    """`label_allowed`, or `label_e<errno>` for the refusal."""
    try:
        attempt()  # type: ignore[operator]
    except OSError as err:
        return f"{label}_e{err.errno}"
    return f"{label}_allowed"


def _hostile(port: int):  # type: ignore[no-untyped-def]
    def decode(raw: bytes, request: DecodeRequest) -> DecodedImage:
        def tcp() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                conn.sendall(b"exfiltrated")

        def unix() -> None:
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()

        def spawn() -> None:
            pid = os.posix_spawn("/bin/true", ["/bin/true"], {})
            os.waitpid(pid, 0)

        def userns() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
                raise OSError(ctypes.get_errno(), "unshare")

        kinds = tuple(_outcome(n, f) for n, f in
                      (("tcp", tcp), ("unix", unix), ("exec", spawn), ("userns", userns)))
        img = decode_any(raw, request)
        return DecodedImage(data=img.data, metadata_kinds=kinds, faces=0)
    return decode


def test_exploited_decoder_has_no_network_and_cannot_exec(
        monkeypatch: pytest.MonkeyPatch) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    monkeypatch.setattr(worker, "decode_any", _hostile(port))
    request = DecodeRequest()
    try:
        with IsolatedDecoder(TRAIN_IDS) as decoder:
            decoder.start(request)
            assert decoder.pid is not None
            # Root natively: the zygote has a network namespace of its own.
            assert decoder.network_isolated is True
            assert os.readlink(f"/proc/{decoder.pid}/ns/net") != os.readlink("/proc/self/ns/net")
            result = decoder(_png(), request)
        eperm = errno.EPERM
        assert set(result.metadata_kinds) == {f"tcp_e{eperm}", f"unix_e{eperm}",
                                              f"exec_e{eperm}", f"userns_e{eperm}"}
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever connected
        assert Image.open(io.BytesIO(result.data)).size == (32, 32)  # the decode itself worked
    finally:
        listener.close()


@pytest.mark.parametrize("mode", ["dropped", "fallback"])
def test_confined_decoder_decodes_like_the_in_process_one(mode: str, tmp_path: Path) -> None:
    request = DecodeRequest(output_format="webp", resolution=(24, 24))
    raw = _png()
    expected = decode_any(raw, request)
    decoder = IsolatedDecoder(TRAIN_IDS) if mode == "dropped" \
        else IsolatedDecoder.unprivileged_fallback()
    with decoder:
        decoder.start(request)
        got = decoder(raw, request)
        status = Path(f"/proc/{decoder.pid}/status").read_text()
    assert got.data == expected.data
    assert "Seccomp:\t2" in status and "NoNewPrivs:\t1" in status
