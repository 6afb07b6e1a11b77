"""Leak probe: what a run wrote outside the cipher dir must hold none of the dataset's content.

`LeakProbe(roots, needles).start()` snapshots every file below the roots (path → inode, size,
mtime, ctime; symlinks not followed, other filesystems not entered); `finish()` snapshots again
and scans every new or changed file for every needle. `scan_tree` scans a whole tree (the cipher
dir's raw bytes). Needles come from a dataset: each caption string, and 64-byte windows of each
image file and of its decoded pixels (`dataset_needles`). Hits name the file and a needle label
("caption 3", "image 2 file@1024"), never the needle itself.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

__all__ = ["Hit", "LeakProbe", "LeakReport", "Needle", "dataset_needles", "scan_tree",
           "standard_roots", "unique_dataset"]

WINDOW = 64
MAX_SCAN_BYTES = 512 * 1024 * 1024  # bigger files are counted as skipped, not read
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass(frozen=True)
class Needle:
    """A byte string that must not appear; `label` is safe to print."""

    label: str
    data: bytes


@dataclass(frozen=True)
class Hit:
    """A needle found in a file."""

    path: Path
    label: str


@dataclass
class LeakReport:
    """What `finish` (or `scan_tree`) looked at and found."""

    changed: int = 0
    scanned: int = 0
    skipped: int = 0
    hits: list[Hit] = field(default_factory=list)


def _distinct_enough(window: bytes, minimum: int) -> bool:
    # A flat run (one colour, zero padding) would match unrelated files: not distinctive.
    return len(window) == WINDOW and len(set(window)) >= minimum


def _pick(items: list[Needle], minimum: int, common: bytes, count: int = 6,
          budget: int = 200) -> list[Needle]:
    """Up to `count` distinctive needles, spread over `items` (evenly spaced tries first)."""
    if not items:
        return []
    spaced = [items[int(k * len(items) / count)] for k in range(count)]
    picked: list[Needle] = []
    for needle in [*spaced, *items][:budget]:
        if len(picked) == count:
            break
        if needle not in picked and _distinct_enough(needle.data, minimum) \
                and needle.data not in common:
            picked.append(needle)
    return picked


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def _file_windows(raw: bytes, label: str, ref: bytes | None, common: bytes) -> list[Needle]:
    # Without a reference, skip the first window (magic/header); with one, start where the
    # file first differs from its reference copy: everything before is shared with it.
    start = WINDOW if ref is None else _first_difference(raw, ref)
    out = [Needle(f"{label}@{off}", raw[off:off + WINDOW])
           for off in range(start, len(raw) - WINDOW, WINDOW)]
    return _pick(out, 16, common)


def _pixel_windows(pixels: bytes, label: str, ref: bytes | None, common: bytes) -> list[Needle]:
    """Windows of the decoded pixels: where they differ from the reference, else edge-crossing."""
    if ref is not None and len(ref) == len(pixels):
        offsets = sorted({max(0, i - WINDOW // 2) for i, (x, y) in enumerate(zip(pixels, ref,
                                                                               strict=True))
                          if x != y})
    else:
        offsets = list(range(0, len(pixels) - WINDOW, WINDOW))
    out = [Needle(f"{label}@{off}", pixels[off:off + WINDOW]) for off in offsets]
    return _pick(out, 4, common)


def _pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def dataset_needles(train_data_dir: Path, reference: Path | None = None) -> list[Needle]:
    """Every caption string (UTF-8) and byte windows of every image file and its pixels.

    `reference`: a dataset whose copies may legitimately lie around (the deterministic
    synthetic one, written by other test sessions too). Windows that occur in any of its files
    or decoded pixels are not distinctive and are dropped; images are compared with their
    counterpart at the same relative path.
    """
    needles: list[Needle] = []
    files = sorted(p for p in train_data_dir.rglob("*") if p.is_file())
    ref_images = sorted(p for p in reference.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES) \
        if reference is not None else []
    common_raw = b"\0".join(p.read_bytes() for p in ref_images)
    common_px = b"\0".join(_pixels(p) for p in ref_images)
    for i, path in enumerate(p for p in files if p.suffix == ".txt"):
        caption = path.read_text(encoding="utf-8").strip()
        if caption:
            needles.append(Needle(f"caption {i}", caption.encode()))
    for i, path in enumerate(p for p in files if p.suffix.lower() in _IMAGE_SUFFIXES):
        twin = reference / path.relative_to(train_data_dir) if reference is not None else None
        has_twin = twin is not None and twin.is_file()
        needles += _file_windows(path.read_bytes(), f"image {i} file",
                                 twin.read_bytes() if has_twin and twin else None, common_raw)
        needles += _pixel_windows(_pixels(path), f"image {i} pixels",
                                  _pixels(twin) if has_twin and twin else None, common_px)
    return needles


def unique_dataset(src: Path, dst: Path, salt: str) -> Path:
    """Copy a dataset, making every caption and image unique to this test (`salt`).

    The synthetic dataset is deterministic, so other test sessions on the machine write
    byte-identical copies; a salted copy keeps their files from matching our needles.
    """
    import random

    rng = random.Random(salt)
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".txt":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text().strip() + f", token{salt}\n", encoding="utf-8")
        elif path.suffix.lower() in _IMAGE_SUFFIXES:
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as image:
                img = image.convert("RGB")
            for _ in range(24):  # salt pixels: distinct bytes in every encoded file
                img.putpixel((rng.randrange(img.width), rng.randrange(img.height)),
                             (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
            img.save(target, format="PNG" if path.suffix == ".png" else "JPEG", quality=95)
        else:
            target.write_bytes(path.read_bytes())
    return dst


def standard_roots(*extra: Path) -> list[Path]:
    """Where a run can write outside the cipher dir: /tmp, /var/tmp, /dev/shm, ~/.cache, + extra."""
    home = Path(os.environ.get("HOME", "/root"))
    roots = [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), home / ".cache", *extra]
    return [r for r in roots if r.exists()]


_Stamp = tuple[int, int, int, int]


def _walk(root: Path, excluded: set[str]) -> Iterable[tuple[str, _Stamp]]:
    try:
        root_dev = os.lstat(root).st_dev
    except OSError:
        return
    stack = [str(root)]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue  # vanished or unreadable
        for entry in entries:
            if entry.path in excluded:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev == root_dev:  # never enter another filesystem (FUSE mounts!)
                    stack.append(entry.path)
            elif stat.S_ISREG(st.st_mode):
                yield entry.path, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _scan_file(path: str, needles: list[Needle], report: LeakReport) -> None:
    try:
        if os.lstat(path).st_size > MAX_SCAN_BYTES:
            report.skipped += 1
            return
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        report.skipped += 1
        return
    report.scanned += 1
    for needle in needles:
        if needle.data in data:
            report.hits.append(Hit(Path(path), needle.label))


def scan_tree(root: Path, needles: list[Needle]) -> LeakReport:
    """Scan every regular file below `root` (raw bytes) for every needle."""
    report = LeakReport()
    for path, _ in _walk(root, set()):
        _scan_file(path, needles, report)
    return report


class LeakProbe:
    """Before/after snapshot of `roots` (minus `exclude`) and a scan of what changed."""

    def __init__(self, roots: list[Path], needles: list[Needle], *,
                 exclude: Iterable[Path] = ()) -> None:
        if not needles:
            raise ValueError("a leak probe needs needles")
        self.needles = needles
        self._excluded = {os.path.realpath(p) for p in exclude}
        # Roots nested in other roots are walked once, by the outer one.
        real = sorted({os.path.realpath(r) for r in roots}, key=len)
        self.roots = [Path(r) for i, r in enumerate(real)
                      if not any(r.startswith(o.rstrip("/") + "/") for o in real[:i])]
        self._before: dict[str, _Stamp] | None = None

    def _snapshot(self) -> dict[str, _Stamp]:
        snap: dict[str, _Stamp] = {}
        for root in self.roots:
            snap.update(_walk(root, self._excluded))
        return snap

    def start(self) -> None:
        """Take the before snapshot."""
        self._before = self._snapshot()

    def finish(self) -> LeakReport:
        """Take the after snapshot and scan every new or changed file for every needle."""
        if self._before is None:
            raise RuntimeError("start() was not called")
        report = LeakReport()
        for path, stamp in self._snapshot().items():
            if self._before.get(path) != stamp:
                report.changed += 1
                _scan_file(path, self.needles, report)
        return report
