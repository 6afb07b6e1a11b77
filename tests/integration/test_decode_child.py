"""`data import|sanitize` decode untrusted images in a forked child dropped to the training uid.

Real Pillow/lcms in a real child process, real crafted files (a PNG decompression bomb under the
pixel limit: 8000x7000 px of zeros in 160 kB). Shown here: the isolated decoder gives the same
bytes as the in-process one; the decoding process runs as the training uid with no capability, no
no-new-privs escape, no open file but its pipes and no copy of the pseudonym key in memory; a
bomb that exhausts the child's memory, a crash (the child SIGKILLed mid-decode, as a segfault
would end it) and a hang (past the per-image deadline) each reject that one file, counted, while
every other file imports.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest

from entrypoint.decode.isolated import IsolatedDecoder
from secure_trainer.devtools.synthetic_dataset import make_dataset
from secure_trainer.privacy.pseudonym import Pseudonymizer
from secure_trainer.privacy.sanitize import SanitizeOptions, SanitizeReport, sanitize_tree
from tests.unit.secure_trainer.privacy.test_sanitize_faces import real_face_photo
from tests.unit.secure_trainer.privacy.test_sanitize_samples import make_full_jpeg

pytestmark = [pytest.mark.integration, pytest.mark.root]
# A training uid of its own: a `run` elsewhere on the host SIGKILLs every process of *its*
# training uid (10001) when it ends, and that would include this test's decoder.
TRAIN_IDS = (10087, 10087)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def bomb_png(width: int = 8000, height: int = 7000) -> bytes:
    """A valid RGB PNG of zeros: tiny on disk, width*height*3 bytes once decoded."""
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)  # filter byte 0, then the pixels
    idat = b"".join([*(comp.compress(row) for _ in range(height)), comp.flush()])
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


@pytest.fixture()
def src(tmp_path: Path) -> Path:
    """The synthetic dataset plus a JPEG full of metadata (EXIF/GPS/XMP/IPTC/ICC)."""
    root = make_dataset(tmp_path / "src", per_subset=4)
    make_full_jpeg(root / "10_subject" / "meta.jpg")
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_isolated_decoder_gives_identical_results(src: Path, tmp_path: Path) -> None:
    key = b"k" * 32
    options = SanitizeOptions()
    baseline = sanitize_tree(src, tmp_path / "in-process", pseudonymizer=Pseudonymizer(key),
                             options=options)
    assert baseline.images_written >= 8 and baseline.metadata_removed["gps"] == 1
    for name, decoder in (("dropped", IsolatedDecoder(TRAIN_IDS)),
                          ("fallback", IsolatedDecoder.unprivileged_fallback())):
        with decoder:
            decoder.start(options.decode_request())
            report = sanitize_tree(src, tmp_path / name, pseudonymizer=Pseudonymizer(key),
                                   options=options, decoder=decoder)
        assert report.summary() == baseline.summary(), name
        assert _tree(tmp_path / name) == _tree(tmp_path / "in-process"), name


def test_face_blur_runs_in_the_dropped_decoder(tmp_path: Path) -> None:
    """CenterFace (OpenCV DNN, model loaded before the fork) in the forked, dropped child:
    the real face is found and blurred, as in-process."""
    sub = tmp_path / "src" / "3_people"
    sub.mkdir(parents=True)
    real_face_photo().save(sub / "portrait.jpg", quality=95)
    options = SanitizeOptions(blur_faces=True)
    with IsolatedDecoder(TRAIN_IDS) as decoder:
        decoder.start(options.decode_request())
        report = sanitize_tree(tmp_path / "src", tmp_path / "dst",
                               pseudonymizer=Pseudonymizer(b"f" * 32), options=options,
                               decoder=decoder)
    assert report.faces_blurred == 1 and not report.rejected
    sanitize_tree(tmp_path / "src", tmp_path / "in-process",
                  pseudonymizer=Pseudonymizer(b"f" * 32), options=options)
    assert _tree(tmp_path / "dst") == _tree(tmp_path / "in-process")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Scan every readable mapping of `pid` (we are root) for `needle`."""
    found = False
    with open(f"/proc/{pid}/maps", encoding="ascii") as maps, \
            open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                found = found or needle in mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue  # [vvar] and friends
    return found


def _import(src: Path, dst: Path, decoder: IsolatedDecoder) -> tuple[SanitizeReport, bytes]:
    """What `data import` does: start the decoder first, only then load the key."""
    options = SanitizeOptions()
    decoder.start(options.decode_request())
    key = os.urandom(32)
    return sanitize_tree(src, dst, pseudonymizer=Pseudonymizer(key), options=options,
                         decoder=decoder), key


def test_bomb_crash_and_hang_each_cost_one_file(src: Path, tmp_path: Path) -> None:
    # Sorted before every other name of the subset, so the good files come after the bad ones.
    bomb = bomb_png()
    (src / "10_subject" / "bomb_a.png").write_bytes(bomb)
    (src / "10_subject" / "bomb_b.png").write_bytes(bomb)
    good = sanitize_tree(src, tmp_path / "ref", pseudonymizer=Pseudonymizer(b"k" * 32),
                         options=SanitizeOptions(max_pixels=1_000_000)).images_written

    # 1. The bomb exhausts the child's memory budget: refused as too large, twice.
    with IsolatedDecoder(TRAIN_IDS, memory_bytes=256 << 20) as decoder:
        report, _ = _import(src, tmp_path / "low-memory", decoder)
    assert dict(report.rejected) == {"too_large": 2}
    assert report.images_written == good

    # 2. A crash (SIGKILL of the decoding process mid-file) and a hang (past the deadline).
    seen: dict[str, object] = {}

    def crash_the_first_decode(zygote: int) -> None:
        deadline = time.monotonic() + 60
        while not _children(zygote) and time.monotonic() < deadline:
            time.sleep(0.005)
        worker = _children(zygote)[0]
        seen["zygote"], seen["worker"] = _status(zygote), _status(worker)
        seen["fds"] = [os.readlink(f"/proc/{worker}/fd/{fd}")
                       for fd in os.listdir(f"/proc/{worker}/fd")]
        os.kill(worker, 9)

    # The bomb takes seconds to decode, a good file milliseconds.
    with IsolatedDecoder(TRAIN_IDS, timeout_s=0.8) as decoder:
        options = SanitizeOptions()
        decoder.start(options.decode_request())
        assert decoder.pid is not None
        watcher = threading.Thread(target=crash_the_first_decode, args=(decoder.pid,))
        watcher.start()
        key = os.urandom(32)  # read after the fork, as `data import` does
        report = sanitize_tree(src, tmp_path / "crash-hang", pseudonymizer=Pseudonymizer(key),
                               options=options, decoder=decoder)
        watcher.join()
        assert _memory_holds(os.getpid(), key)  # the scan finds it where it is ...
        assert not _memory_holds(decoder.pid, key), "the decoder's memory holds the key"
    assert dict(report.rejected) == {"decoder_crashed": 1, "decoder_timeout": 1}
    assert report.images_written == good
    for who in ("zygote", "worker"):
        status = seen[who]
        assert isinstance(status, dict)
        assert status["Uid"].split() == ["10087"] * 4 and status["Gid"].split() == ["10087"] * 4
        assert status["Groups"] == ""
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[cap], 16) == 0, (who, cap)
        assert status["NoNewPrivs"] == "1"
    fds = seen["fds"]
    assert isinstance(fds, list) and fds and all(
        f.startswith("pipe:") or f == "/dev/null" for f in fds), fds
