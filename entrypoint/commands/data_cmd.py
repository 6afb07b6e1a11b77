"""`secure-trainer data import|sanitize|scan`: data enters the workspace only through the sanitizer.

The workspace is the mounted (plaintext view of the) gocryptfs store: `--workspace` or
ST_MOUNTPOINT. A destination that is not on a gocryptfs mount is refused unless
`--unsafe-plaintext-dest` (tests/dev; warns). Output is counts only.
Images are decoded in a child process dropped to the training uid (entrypoint/decode/),
never in this root process, which holds the pseudonym key.
Must never print or log a file name, folder name, caption or the pseudonym key.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

import typer

from entrypoint.commands.data_dicom import dicom_request, pii_region_option
from entrypoint.decode.isolated import IsolatedDecoder
from entrypoint.errors import ConfigError, DataRejected
from secure_trainer.privacy.pii import PiiMode
from secure_trainer.privacy.pseudonym import Pseudonymizer, load_or_create_key
from secure_trainer.privacy.sanitize import (
    SanitizeOptions,
    SanitizeReport,
    atomic_write,
    sanitize_tree,
    scan_tree,
)
from secure_trainer.registry import ImageRecord, Registry, read_subjects

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups

# coupling: E's Workspace layout (entrypoint/workspace/gocryptfs.py: datasets/, registry.sqlite).
DATASETS_DIR = "datasets"
REGISTRY_FILE = "registry.sqlite"
SUBJECTS_FILE = "subjects.csv"
IMPORT_REPORT = "import-report.json"  # coupling: entrypoint/policy/gatherers/dataset.py
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RES_RE = re.compile(r"^(\d{1,5})(?:x(\d{1,5}))?$")
_IMPORT_SRC = typer.Argument(..., help="Plaintext Kohya dataset folder (read only).")
_SANITIZE_SRC = typer.Argument(..., help="Source dataset folder (read only).")
_SANITIZE_DST = typer.Argument(..., help="Destination folder (on the encrypted workspace).")
_SCAN_DIR = typer.Argument(..., help="Folder to inspect (nothing is changed).")
_CAPTION_CSV = typer.Option(
    None, "--caption-csv", help="Captions from a CSV of file name, caption (lora-scripts' "
    "metadata.csv) instead of sidecars; names are relative to SRC.")
_KEY_WS = typer.Option(None, "--workspace", help="Take the pseudonym key from this workspace.")


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def gocryptfs_mount_of(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """True when the deepest mount containing `path` is a `fuse.gocryptfs` file system."""
    target = path.resolve()
    best, best_type = Path("/"), ""
    for line in mountinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        left, _, right = line.partition(" - ")
        parts = left.split()
        if len(parts) < 5 or not right:
            continue
        point = Path(_unescape_mountinfo(parts[4]))
        if target.is_relative_to(point) and len(point.parts) >= len(best.parts):
            best, best_type = point, right.split()[0]
    return best_type == "fuse.gocryptfs"


def require_encrypted(path: Path, *, unsafe_plaintext: bool, what: str) -> None:
    """Refuse (DataRejected) a `path` not on a gocryptfs mount, unless the unsafe opt-out."""
    if gocryptfs_mount_of(path):
        return
    if not unsafe_plaintext:
        raise DataRejected(f"the {what} is not on a mounted gocryptfs workspace; open it with "
                           "`secure-trainer workspace open` (or, for tests only, pass "
                           "--unsafe-plaintext-dest)")
    print(f"warning: writing to a plaintext {what} (--unsafe-plaintext-dest): "
          "not for real data", file=sys.stderr)


def resolve_workspace(workspace: Path | None, *, unsafe_plaintext: bool) -> Path:
    """The mounted workspace from `--workspace` or ST_MOUNTPOINT, checked to be encrypted.

    Raises ConfigError when none is given or it is not a folder; DataRejected when plaintext.
    """
    chosen = workspace or (Path(os.environ["ST_MOUNTPOINT"]) if os.environ.get("ST_MOUNTPOINT")
                           else None)
    if chosen is None:
        raise ConfigError("no workspace: pass --workspace DIR or set ST_MOUNTPOINT")
    if not chosen.is_dir():
        raise ConfigError("the workspace folder does not exist (is the workspace open?)")
    require_encrypted(chosen, unsafe_plaintext=unsafe_plaintext, what="workspace")
    return chosen.resolve()


def _read_key_stdin() -> bytearray:
    key = bytearray(sys.stdin.buffer.read(4096))
    while key and key[-1:] in (b"\n", b"\r"):
        key.pop()
    if len(key) < 16:
        raise ConfigError("the pseudonym key on stdin must be at least 16 bytes")
    return key


def _options(fmt: str, resolution: str | None, blur_faces: bool, pii: str, deny_list: Path | None,
             deny: list[str], caption_ext: list[str], max_pixels: int) -> SanitizeOptions:
    formats: dict[str, Literal["png", "webp"]] = {"png": "png", "webp": "webp"}
    if fmt not in formats:
        raise ConfigError("--format must be png or webp")
    res = None
    if resolution:
        m = _RES_RE.match(resolution)
        if not m:
            raise ConfigError("--resolution must be N or WxH, e.g. 512 or 768x512")
        res = (int(m.group(1)), int(m.group(2) or m.group(1)))
    try:
        mode = PiiMode(pii)
    except ValueError:
        raise ConfigError("--pii must be report, redact or reject") from None
    terms = list(deny)
    if deny_list is not None:
        try:
            terms += [t.strip() for t in deny_list.read_text(encoding="utf-8").splitlines()
                      if t.strip() and not t.lstrip().startswith("#")]
        except (OSError, UnicodeDecodeError):
            raise ConfigError("--deny-list file could not be read as UTF-8") from None
    exts = tuple(e if e.startswith(".") else f".{e}" for e in (caption_ext or [".txt", ".caption"]))
    return SanitizeOptions(output_format=formats[fmt], resolution=res, blur_faces=blur_faces,
                           pii_mode=mode, deny_list=tuple(terms), caption_extensions=exts,
                           max_pixels=max_pixels)


def _decoder(options: SanitizeOptions) -> IsolatedDecoder:
    """A started decoder: images are decoded in a forked child without privileges (the
    training uid), never in this root process. Call it before the pseudonym key is read, so
    the child's copy of our memory never held the key (entrypoint/decode/isolated.py)."""
    decoder = IsolatedDecoder.from_env(os.environ)
    if decoder.ids is None:
        print("note: not root or ST_TRAIN_UID=none: images are decoded in a separate process "
              "without a privilege drop (unprivileged fallback)", file=sys.stderr)
    decoder.start(options.decode_request())
    return decoder


def _print_report(summary: dict[str, object], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    for key, value in summary.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
            typer.echo(f"{key}: {inner}")
        else:
            typer.echo(f"{key}: {value}")


def _write_face_report(dest: Path, options: SanitizeOptions, report: SanitizeReport,
                       people: bool) -> None:
    """`import-report.json` beside the subsets: how faces were handled, counts only, for the
    policy's dataset facts (entrypoint/policy/gatherers/dataset.py). `people`: --people, or
    subjects were recorded (DICOM patients, subjects.csv)."""
    from secure_trainer.privacy.face_model import detector_name

    data = {"people": people, "blur_faces": options.blur_faces,
            "face_detector": detector_name() if options.blur_faces else None,
            "faces_blurred": report.faces_blurred,
            "face_scan": options.find_faces and not options.blur_faces,
            "faces_found_not_blurred": report.faces_found_not_blurred}
    if dest.is_dir():
        atomic_write(dest / IMPORT_REPORT, json.dumps(data, sort_keys=True).encode())


def _finish(report: SanitizeReport, fail_on_reject: bool) -> None:
    rejected = sum(report.rejected.values())
    if not report.files and rejected:
        raise DataRejected(f"no image could be imported ({rejected} rejected; see counts above)")
    if fail_on_reject and rejected:
        raise DataRejected(f"{rejected} file(s) rejected and --fail-on-reject is set")


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `data import`, `data sanitize` and `data scan`."""
    del root
    fmt_o = typer.Option("png", "--format", help="Output encoding: png or webp (lossless).")
    res_o = typer.Option(None, "--resolution", help="Resize to cover and centre-crop: N or WxH.")
    blur_o = typer.Option(False, "--blur-faces", help="Blur faces (CenterFace; OpenCV's Haar cascades only without the model file).")
    pii_o = typer.Option("redact", "--pii", help="Caption PII: report, redact or reject.")
    deny_file_o = typer.Option(None, "--deny-list", help="File of deny-listed terms, one a line.")
    deny_o = typer.Option([], "--deny", help="A deny-listed term (repeatable).")
    cap_o = typer.Option([], "--caption-extension", help="Caption extension (default .txt, .caption).")
    keep_o = typer.Option(False, "--keep-folder-names", help="Keep folder names (default: pseudonymise all but the N_ repeats).")
    px_o = typer.Option(64_000_000, "--max-pixels", help="Reject images with more pixels (decompression-bomb guard).")
    key_o = typer.Option(False, "--pseudonym-key-stdin", help="Read the pseudonym HMAC key from stdin.")
    ws_o = typer.Option(None, "--workspace", help="The mounted workspace (default: ST_MOUNTPOINT).")
    unsafe_o = typer.Option(False, "--unsafe-plaintext-dest", help="Allow a destination that is not encrypted (tests/dev only).")
    json_o = typer.Option(False, "--json", help="Print the counts as JSON.")
    fail_o = typer.Option(False, "--fail-on-reject", help="Exit 8 if any file was rejected.")
    dcap_o = typer.Option([], "--dicom-caption", help="DICOM attribute for the caption (repeatable; default Modality, BodyPartExamined).")

    @groups.data.command("import")
    def import_cmd(
        src: Path = _IMPORT_SRC,
        name: str | None = typer.Option(None, "--name", help="Dataset name in the workspace."),
        workspace: Path | None = ws_o, pseudonym_key_stdin: bool = key_o, fmt: str = fmt_o,
        resolution: str | None = res_o, blur_faces: bool = blur_o, pii: str = pii_o,
        deny_list: Path | None = deny_file_o, deny: list[str] = deny_o,
        caption_extension: list[str] = cap_o, keep_folder_names: bool = keep_o,
        max_pixels: int = px_o, unsafe_plaintext_dest: bool = unsafe_o, as_json: bool = json_o,
        fail_on_reject: bool = fail_o,
        window: str | None = typer.Option(None, "--window", help="DICOM window CENTER,WIDTH (e.g. 40,400 for CT soft tissue); default: the file's, else min-max."),
        dicom_bits: int = typer.Option(8, "--dicom-bits", help="DICOM output PNG depth: 8 or 16."),
        dicom_dates: str = typer.Option("remove", "--dicom-dates", help="DICOM dates: remove, or shift (per patient, keyed)."),
        allow_burned_in: bool = typer.Option(False, "--allow-burned-in", help="Import DICOM images flagged BurnedInAnnotation=YES."),
        dicom_caption: list[str] = dcap_o,
        pii_region: str | None = typer.Option(None, "--pii-region", help="Region (ISO 3166, e.g. DE) for caption phone numbers without +; default: any."),
        retention_days: int | None = typer.Option(
            None, "--retention-days", help="Days until `registry expire` deletes the dataset "
            "(default: ST_RETENTION_DAYS; none: no expiry)."),
        people: bool = typer.Option(False, "--people", help="Mark the dataset as showing people "
                                    "(policy: dataset.people_faces_blurred)."),
        caption_csv: Path | None = _CAPTION_CSV,
        face_scan: bool = typer.Option(
            True, "--face-scan/--no-face-scan", help="Without --blur-faces, still count the "
            "faces left visible (policy: dataset.faces_found_blurred); on by default."),
    ) -> None:
        """Sanitize SRC into the workspace's datasets/NAME and record it in the registry."""
        from entrypoint.run.seal import retention_days_option
        from secure_trainer.data.caption_csv import import_captions

        days = retention_days_option(retention_days, os.environ)
        options = _options(fmt, resolution, blur_faces, pii, deny_list, deny, caption_extension,
                           max_pixels)
        options = replace(options, dicom=dicom_request(window, dicom_bits, dicom_dates,
                                                       allow_burned_in, dicom_caption),
                          pii_region=pii_region_option(pii_region), find_faces=face_scan)
        ws = resolve_workspace(workspace, unsafe_plaintext=unsafe_plaintext_dest)
        src_abs = src.resolve()
        if src_abs.is_relative_to(ws) or ws.is_relative_to(src_abs):
            raise ConfigError("the import source must be outside the workspace")
        # Before anything is written: a malformed CSV, a row naming a file outside SRC or
        # repeated file names end the import (exit 8, one line, row numbers and counts only).
        csv_captions = import_captions(caption_csv) if caption_csv is not None else None
        decoder = _decoder(options)  # forked before the key is read
        try:
            _import(src, src_abs, ws, name, options, pseudonym_key_stdin, keep_folder_names,
                    decoder, as_json, fail_on_reject, days, people, csv_captions)
        finally:
            decoder.close()

    def _import(src: Path, src_abs: Path, ws: Path, name: str | None,
                options: SanitizeOptions, pseudonym_key_stdin: bool, keep_folder_names: bool,
                decoder: IsolatedDecoder, as_json: bool, fail_on_reject: bool,
                retention_days: int | None = None, people: bool = False,
                csv_captions: dict[PurePosixPath, str] | None = None) -> None:
        key = _read_key_stdin() if pseudonym_key_stdin else load_or_create_key(ws)
        try:
            if name is None:
                # A pseudonymous default: the source folder's own name may be personal data.
                name = "ds-" + hmac.new(bytes(key), str(src_abs).encode(), "sha256").hexdigest()[:10]
            if not _NAME_RE.match(name):
                raise ConfigError("--name may hold letters, digits, '.', '_' and '-' (max 64)")
            pseudo = Pseudonymizer(key, keep_folder_names=keep_folder_names)
        finally:
            key[:] = bytes(len(key))
        subjects = read_subjects(src / SUBJECTS_FILE) if (src / SUBJECTS_FILE).is_file() else {}
        registry = Registry(ws / REGISTRY_FILE)
        dest = ws / DATASETS_DIR / name
        report = sanitize_tree(src_abs, dest, pseudonymizer=pseudo, options=options,
                               blocked_hashes=registry.erased_hashes(), decoder=decoder,
                               csv_captions=csv_captions)
        registry.record_images(
            ImageRecord(name, str(dest / f.rel_path), f.sha256,
                        f.subject or subjects.get(f.source_rel),
                        tuple(str(dest / c) for c in f.captions), f.source_rel.as_posix())
            for f in report.files)
        if retention_days is not None:  # `registry expire` deletes it (and runs on it) after
            from datetime import timedelta

            registry.set_dataset_expiry(name, dest, timedelta(days=retention_days))
        summary = {"dataset": name, **report.summary(),
                   "subjects_recorded": sum(1 for f in report.files
                                            if f.subject or f.source_rel in subjects)}
        _write_face_report(dest, options, report, people or bool(summary["subjects_recorded"]))
        _print_report(summary, as_json)
        _finish(report, fail_on_reject)

    @groups.data.command("sanitize")
    def sanitize_cmd(
        src: Path = _SANITIZE_SRC,
        dst: Path = _SANITIZE_DST,
        workspace: Path | None = _KEY_WS,
        pseudonym_key_stdin: bool = key_o, fmt: str = fmt_o, resolution: str | None = res_o,
        blur_faces: bool = blur_o, pii: str = pii_o, deny_list: Path | None = deny_file_o,
        deny: list[str] = deny_o, caption_extension: list[str] = cap_o,
        keep_folder_names: bool = keep_o, max_pixels: int = px_o,
        unsafe_plaintext_dest: bool = unsafe_o, as_json: bool = json_o,
        fail_on_reject: bool = fail_o,
    ) -> None:
        """Sanitize SRC into DST, folder to folder (same pipeline as import, no registry)."""
        options = _options(fmt, resolution, blur_faces, pii, deny_list, deny, caption_extension,
                           max_pixels)
        dst.mkdir(mode=0o700, parents=True, exist_ok=True)
        require_encrypted(dst, unsafe_plaintext=unsafe_plaintext_dest, what="destination")
        src_abs, dst_abs = src.resolve(), dst.resolve()
        if src_abs.is_relative_to(dst_abs) or dst_abs.is_relative_to(src_abs):
            raise ConfigError("source and destination must not contain each other")
        ws = workspace or (Path(os.environ["ST_MOUNTPOINT"]) if os.environ.get("ST_MOUNTPOINT")
                           else None)
        with _decoder(options) as decoder:  # forked before the key is read
            report = _sanitize(src_abs, dst_abs, ws, options, pseudonym_key_stdin,
                               keep_folder_names, unsafe_plaintext_dest, decoder)
        mapping = {f.rel_path.as_posix(): f.source_rel.as_posix() for f in report.files}
        # The name mapping lives beside the data it maps (same encrypted destination), 0600.
        atomic_write(dst_abs / ".pseudonyms.json", json.dumps(mapping, indent=1).encode())
        _print_report(report.summary(), as_json)
        _finish(report, fail_on_reject)

    def _sanitize(src_abs: Path, dst_abs: Path, ws: Path | None, options: SanitizeOptions,
                  pseudonym_key_stdin: bool, keep_folder_names: bool,
                  unsafe_plaintext_dest: bool, decoder: IsolatedDecoder) -> SanitizeReport:
        if pseudonym_key_stdin:
            key = _read_key_stdin()
        elif ws is not None:
            key = load_or_create_key(resolve_workspace(ws, unsafe_plaintext=unsafe_plaintext_dest))
        else:
            key = bytearray(os.urandom(32))
            print("note: no pseudonym key given: names are random for this run "
                  "(re-runs will not match)", file=sys.stderr)
        try:
            pseudo = Pseudonymizer(key, keep_folder_names=keep_folder_names)
        finally:
            key[:] = bytes(len(key))
        return sanitize_tree(src_abs, dst_abs, pseudonymizer=pseudo, options=options,
                             decoder=decoder)

    @groups.data.command("dicom-subject")
    def dicom_subject_cmd(workspace: Path | None = ws_o, unsafe_plaintext_dest: bool = unsafe_o,
                          ) -> None:
        """Print the pseudonymous subject id `data import` records for a DICOM PatientID read
        from stdin (not argv: it stays out of the process list), for `registry erase --subject`."""
        patient_id = sys.stdin.readline(4096).strip()
        if not patient_id:
            raise ConfigError("give the DICOM PatientID on stdin")
        key = load_or_create_key(resolve_workspace(workspace,
                                                   unsafe_plaintext=unsafe_plaintext_dest))
        try:
            typer.echo(Pseudonymizer(key).subject(patient_id))
        finally:
            key[:] = bytes(len(key))

    @groups.data.command("scan")
    def scan_cmd(
        folder: Path = _SCAN_DIR,
        deny_list: Path | None = deny_file_o, deny: list[str] = deny_o,
        caption_extension: list[str] = cap_o, as_json: bool = json_o,
    ) -> None:
        """Count images per metadata kind, captions per PII type and duplicates — no names."""
        options = _options("png", None, False, "report", deny_list, deny, caption_extension,
                           64_000_000)
        report = scan_tree(folder, deny_list=options.deny_list,
                           caption_extensions=options.caption_extensions)
        _print_report(report.summary(), as_json)
