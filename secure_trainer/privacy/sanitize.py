"""The import sanitizer: source dataset folder in, metadata-free pseudonymous Kohya dataset out.

Every image is decoded and re-encoded from its pixels alone (orientation applied, ICC profile
converted to sRGB then dropped, optional face blur and resize), so no container metadata can
survive; the output is re-inspected and refused if any does. Captions pass through the PII
scanner. Bad files are rejected one by one with a reason; a destination file is only ever
created by rename of a complete temp file. The source tree is only read.
Decoding is a `Decoder` (secure_trainer/privacy/image_decode.py): bytes in, bytes out, so the
caller can run it in another, unprivileged process; this module does all file I/O itself.
SECURITY: never logs, and never puts a file name, path or caption in a message or report.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from secure_trainer.errors import DataRejected
from secure_trainer.privacy.decode_any import decode_any
from secure_trainer.privacy.dicom.detect import DICOM_SUFFIXES, MAGIC_OFFSET, is_dicom
from secure_trainer.privacy.image_decode import (
    DecodedImage,
    Decoder,
    DecodeRequest,
    DicomRequest,
    ImageRejected,
    RejectReason,
)
from secure_trainer.privacy.imagemeta import MetaReport, inspect
from secure_trainer.privacy.pii import PiiMode, PiiScanner, redact_text
from secure_trainer.privacy.pseudonym import Pseudonymizer

__all__ = [
    "IMAGE_SUFFIXES",
    "Decoder",
    "RejectReason",
    "SanitizeOptions",
    "SanitizeReport",
    "SanitizedFile",
    "ScanReport",
    "atomic_write",
    "iter_source_files",
    "sanitize_tree",
    "scan_tree",
]

# coupling: kohya-compat.md §1 — the extensions Kohya's DreamBooth loader globs for.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
_SOURCE_SUFFIXES = IMAGE_SUFFIXES | DICOM_SUFFIXES
_UNSUPPORTED_SUFFIXES = frozenset({".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl",
                                   ".svg", ".ico", ".psd", ".dng", ".cr2", ".nef", ".arw"})
_MAX_CAPTION_BYTES = 1 << 20
# A caption CSV (lora-scripts' metadata.csv) names images of a flat folder: they land in this
# Kohya subset (1 repeat) so the imported dataset trains like any other.
CSV_FLAT_SUBSET = PurePosixPath("1_images")
CSV_MISSING = "caption_csv_missing_file"  # report.rejected key: a CSV row with no such image
_MAX_SCAN_BYTES = 1 << 30


@dataclass(frozen=True)
class SanitizeOptions:
    """How the sanitizer transforms a dataset (all defaults are the safe choice)."""

    output_format: Literal["png", "webp"] = "png"
    resolution: tuple[int, int] | None = None  # (width, height): resize to cover + centre crop
    blur_faces: bool = False
    find_faces: bool = False
    """Without blur: count faces anyway, so an import can report faces it left visible."""
    pii_mode: PiiMode = PiiMode.REDACT
    deny_list: tuple[str, ...] = ()
    caption_extensions: tuple[str, ...] = (".txt", ".caption")
    max_pixels: int = 64_000_000  # decompression-bomb guard, checked from the header
    max_file_bytes: int = 256 << 20
    pii_region: str | None = None
    """Region (ISO 3166) for phone numbers written without `+`; None: any region."""
    dicom: DicomRequest = field(
        default_factory=lambda: DicomRequest(uid_key=secrets.token_hex(32)))
    """DICOM rendering and de-identification; its UID key is random per import."""

    def __post_init__(self) -> None:
        if self.resolution is not None and min(self.resolution) < 8:
            raise DataRejected("resolution must be at least 8x8 pixels")
        if any(not ext.startswith(".") for ext in self.caption_extensions):
            raise DataRejected("caption extensions must start with a dot")

    def decode_request(self) -> DecodeRequest:
        """The part of these options the image decoder needs."""
        return DecodeRequest(output_format=self.output_format, resolution=self.resolution,
                             blur_faces=self.blur_faces,
                             find_faces=self.find_faces,
                             max_pixels=self.max_pixels,
                             dicom=self.dicom)


@dataclass(frozen=True)
class SanitizedFile:
    """One written image: destination path (relative to the destination root), its source
    path (relative to the source root; stored only inside the workspace) and content hash."""

    rel_path: PurePosixPath
    source_rel: PurePosixPath
    sha256: str
    captions: tuple[PurePosixPath, ...]
    subject: str | None = None
    """Keyed pseudonym of a DICOM source's PatientID (`Pseudonymizer.subject`), else None."""


@dataclass
class SanitizeReport:
    """Counts of one run, plus the written files (names stay in memory / in the workspace)."""

    images_written: int = 0
    images_unchanged: int = 0
    captions_written: int = 0
    faces_blurred: int = 0
    faces_found_not_blurred: int = 0
    duplicates: int = 0
    ignored_files: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    metadata_removed: Counter[str] = field(default_factory=Counter)
    pii_findings: Counter[str] = field(default_factory=Counter)
    files: list[SanitizedFile] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """Counts only — safe to print and to put in an audit record."""
        return {
            "images_written": self.images_written, "images_unchanged": self.images_unchanged,
            "captions_written": self.captions_written, "faces_blurred": self.faces_blurred,
            "faces_found_not_blurred": self.faces_found_not_blurred,
            "duplicates": self.duplicates, "ignored_files": self.ignored_files,
            "rejected": dict(sorted(self.rejected.items())),
            "metadata_removed": dict(sorted(self.metadata_removed.items())),
            "pii_findings": dict(sorted(self.pii_findings.items())),
        }


def atomic_write(dest: Path, data: bytes) -> bool:
    """Write `data` to `dest` via a temp file in the same folder, fsync and rename.

    Returns False (and writes nothing) when `dest` already holds exactly `data`. Never leaves
    a partial file; raises OSError to the caller, which owns the translation.
    """
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (dest.is_file() and not dest.is_symlink() and dest.stat().st_size == len(data)
            and dest.read_bytes() == data):
        return False
    tmp = dest.parent / f".tmp-{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def iter_source_files(src: Path) -> Iterator[tuple[PurePosixPath, os.stat_result]]:
    """Every non-hidden file below `src`, and every symlink (to a file or a folder), never followed."""
    for root, dirs, files in os.walk(src, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        # os.walk lists a symlinked folder but never enters it: surface it so it is counted.
        linked = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        for name in sorted([*files, *linked]):
            if name.startswith("."):
                continue
            full = Path(root) / name
            yield PurePosixPath(full.relative_to(src).as_posix()), os.lstat(full)


def _read_source(path: Path, size: int, max_bytes: int) -> bytes:
    """The source image's bytes, read by the caller (never by the decoder), without following
    a link; raises ImageRejected when it is larger than `max_bytes`."""
    if size > max_bytes:
        raise ImageRejected(RejectReason.TOO_LARGE)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ImageRejected(RejectReason.TOO_LARGE)
    return raw


def _has_dicom_magic(path: Path) -> bool:
    """An extension-less file that starts like DICOM Part 10 (read without following links)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        return is_dicom(fh.read(MAGIC_OFFSET + 4))


def _caption_text(path: Path, opts: SanitizeOptions, scanner: PiiScanner,
                  report: SanitizeReport) -> str:
    with open(path, "rb") as fh:
        raw = fh.read(_MAX_CAPTION_BYTES + 1)
    if len(raw) > _MAX_CAPTION_BYTES:
        raise ImageRejected(RejectReason.TOO_LARGE)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ImageRejected(RejectReason.CAPTION_ENCODING) from None
    return _scanned(text, opts, scanner, report)


def _scanned(text: str, opts: SanitizeOptions, scanner: PiiScanner,
             report: SanitizeReport) -> str:
    findings = scanner.scan(text)
    if findings and opts.pii_mode is PiiMode.REJECT:
        raise ImageRejected(RejectReason.CAPTION_PII)
    report.pii_findings.update({f.type.value for f in findings})
    return redact_text(text, findings) if opts.pii_mode is PiiMode.REDACT else text


def sanitize_tree(src: Path, dst: Path, *, pseudonymizer: Pseudonymizer,
                  options: SanitizeOptions = SanitizeOptions(),
                  blocked_hashes: frozenset[str] = frozenset(),
                  decoder: Decoder = decode_any,
                  csv_captions: Mapping[PurePosixPath, str] | None = None) -> SanitizeReport:
    """Sanitize the Kohya dataset folder `src` into `dst` (created if needed).

    Images directly in `src` are rejected (Kohya ignores them); sub-folder structure is kept
    with pseudonymous names. `blocked_hashes` are output hashes of erased images, refused.
    This function reads every source file and writes every result; `decoder` only turns bytes
    into bytes — the default decodes in this process, the CLI passes one that runs in an
    unprivileged child process (entrypoint/decode/).
    `csv_captions` (`data import --caption-csv`): captions by source-relative path, used
    instead of sidecars and scanned the same way; images directly in `src` then go to
    CSV_FLAT_SUBSET, and rows naming no image are counted as CSV_MISSING.
    Raises DataRejected when `src` is not a readable folder or `dst` cannot be written.
    """
    if not src.is_dir():
        raise DataRejected("the import source is not a folder")
    report = SanitizeReport()
    pipeline = _ImagePipeline(options, decoder)
    scanner = PiiScanner(deny_list=options.deny_list, region=options.pii_region)
    seen_hashes: set[str] = set()
    entries = list(iter_source_files(src))
    names = {rel for rel, _ in entries}
    caption_exts = set(options.caption_extensions)
    if csv_captions is not None:
        images = {rel for rel in names if rel.suffix.lower() in _SOURCE_SUFFIXES
                  and not os.path.islink(src / rel)}
        missing = sum(1 for rel in csv_captions if rel not in images)
        if missing:
            report.rejected[CSV_MISSING] = missing
    for rel, st in entries:
        suffix = rel.suffix.lower()
        if os.path.islink(src / rel):
            report.rejected[RejectReason.SYMLINK.value] += 1
            continue
        if rel.suffix in caption_exts and any(rel.with_suffix(s) in names for s in
                                              (*_SOURCE_SUFFIXES,
                                               *(x.upper() for x in _SOURCE_SUFFIXES))):
            continue  # handled together with its image
        if suffix in _UNSUPPORTED_SUFFIXES:
            report.rejected[RejectReason.UNSUPPORTED.value] += 1
            continue
        if suffix not in _SOURCE_SUFFIXES and not (suffix == "" and _has_dicom_magic(src / rel)):
            report.ignored_files += 1
            continue
        if len(rel.parts) < 2 and csv_captions is None:
            report.rejected[RejectReason.OUTSIDE_SUBSET.value] += 1
            continue
        try:
            _import_one(src, dst, rel, st.st_size, pipeline, scanner, pseudonymizer,
                        blocked_hashes, seen_hashes, names, report, csv_captions)
        except ImageRejected as rej:
            report.rejected[rej.reason.value] += 1
        except OSError:
            raise DataRejected("writing the sanitized dataset failed (disk full or "
                               "destination not writable?)") from None
    return report


def _import_one(src: Path, dst: Path, rel: PurePosixPath, size: int, pipeline: _ImagePipeline,
                scanner: PiiScanner, pseudonymizer: Pseudonymizer, blocked: frozenset[str],
                seen: set[str], names: set[PurePosixPath], report: SanitizeReport,
                csv_captions: Mapping[PurePosixPath, str] | None = None) -> None:
    opts = pipeline.options
    captions: list[tuple[str, str]] = []
    if csv_captions is not None and rel in csv_captions:
        # The CSV's caption replaces any sidecar; same PII scan, written as a sidecar.
        captions.append((opts.caption_extensions[0],
                         _scanned(csv_captions[rel], opts, scanner, report)))
    for ext in opts.caption_extensions if not captions else ():
        cap = rel.with_suffix(ext)
        if cap in names and not os.path.islink(src / cap):
            try:
                captions.append((ext, _caption_text(src / cap, opts, scanner, report)))
            except OSError:
                raise ImageRejected(RejectReason.CORRUPT) from None
    try:
        out = pipeline.run(src / rel, size)
    except OSError:
        raise ImageRejected(RejectReason.CORRUPT) from None
    frames = (out.data, *out.frames)
    digests = [hashlib.sha256(f).hexdigest() for f in frames]
    if any(d in blocked for d in digests):
        raise ImageRejected(RejectReason.ERASED)
    subject = None
    if out.dicom is not None:
        # A DICOM source is rendered to PNG; its subject is the keyed PatientID, and its
        # caption (allow-listed attributes, de-identified) passes the same PII scan.
        subject = pseudonymizer.subject(out.dicom.patient_id) if out.dicom.patient_id else None
        if not captions and out.dicom.caption:
            captions.append((opts.caption_extensions[0],
                             _scanned(out.dicom.caption, opts, scanner, report)))
    suffix = ".png" if out.dicom is not None else f".{opts.output_format}"
    report.metadata_removed.update(out.metadata_kinds)
    report.faces_blurred += out.faces
    report.faces_found_not_blurred += out.faces_found
    for index, (data, digest) in enumerate(zip(frames, digests, strict=True)):
        report.duplicates += digest in seen
        seen.add(digest)
        # Multi-frame: one image per frame, the frame index in its name.
        out_rel = pseudonymizer.path(rel, f"_f{index:04d}{suffix}" if len(frames) > 1 else suffix)
        if len(rel.parts) < 2:  # a flat CSV-captioned folder (checked by the caller)
            out_rel = CSV_FLAT_SUBSET / out_rel
        if atomic_write(dst / out_rel, data):
            report.images_written += 1
        else:
            report.images_unchanged += 1
        cap_rels: list[PurePosixPath] = []
        for ext, text in captions:
            cap_rel = out_rel.with_suffix(ext)
            atomic_write(dst / cap_rel, text.encode("utf-8"))
            report.captions_written += 1
            cap_rels.append(cap_rel)
        report.files.append(SanitizedFile(out_rel, rel, digest, tuple(cap_rels), subject))


class _ImagePipeline:
    """Read one source image (here), decode and re-encode it (in `decoder`)."""

    def __init__(self, options: SanitizeOptions, decoder: Decoder) -> None:
        self.options = options
        self.request = options.decode_request()
        self.decoder = decoder

    def run(self, path: Path, size: int) -> DecodedImage:
        raw = _read_source(path, size, self.options.max_file_bytes)
        return self.decoder(raw, self.request)


@dataclass
class ScanReport:
    """`data scan` result: counts of images per metadata kind, captions per PII type."""

    images: int = 0
    not_images: int = 0  # image extension but unreadable/unsupported content
    captions: int = 0
    duplicates: int = 0  # images whose exact bytes appeared earlier in the scan
    metadata: Counter[str] = field(default_factory=Counter)
    pii: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, object]:
        """Counts only — no values, no names."""
        return {"images": self.images, "not_images": self.not_images,
                "images_with_metadata": dict(sorted(self.metadata.items())),
                "captions": self.captions, "captions_with_pii": dict(sorted(self.pii.items())),
                "duplicates": self.duplicates}


def scan_tree(root: Path, *, deny_list: tuple[str, ...] = (),
              caption_extensions: tuple[str, ...] = (".txt", ".caption")) -> ScanReport:
    """Inspect every image and caption below `root` without changing anything.

    Raises DataRejected when `root` is not a readable folder.
    """
    if not root.is_dir():
        raise DataRejected("the folder to scan does not exist")
    report = ScanReport()
    scanner = PiiScanner(deny_list=deny_list)
    seen: set[str] = set()
    for rel, st in iter_source_files(root):
        path = root / rel
        if os.path.islink(path) or st.st_size > _MAX_SCAN_BYTES:
            continue
        if rel.suffix.lower() in IMAGE_SUFFIXES | _UNSUPPORTED_SUFFIXES:
            try:
                meta = inspect(path)
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except (DataRejected, OSError):
                meta = MetaReport()
            if meta.format == "unknown":
                report.not_images += 1
                continue
            report.images += 1
            report.metadata.update(meta.kinds)
            report.duplicates += digest in seen
            seen.add(digest)
        elif rel.suffix in caption_extensions:
            report.captions += 1
            text = path.read_bytes()[:_MAX_CAPTION_BYTES].decode("utf-8", errors="replace")
            report.pii.update({f.type.value for f in scanner.scan(text)})
    return report
