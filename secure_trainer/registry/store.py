"""The LoRA registry: every LoRA with its data lineage, owner, purpose and expiry; erasure.

One sqlite file (`registry.sqlite`) at the root of the encrypted workspace. Paths are stored
relative to that root and every deletion is confined to it. An erasure deletes whole LoRAs
(a LoRA cannot be "untrained"), their run artefacts and the subject's dataset files, then
leaves a tombstone of hashes (never names) and returns an `ErasureReport` that the CLI writes
to the app audit log. Must never log, and never put a name or path in an error message.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from glob import escape as glob_escape
from pathlib import Path, PurePosixPath

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.registry.files import file_sha256, text_record_sha256
from secure_trainer.registry.model import (
    Artefact,
    ArtefactKind,
    ErasureItem,
    ErasurePlan,
    ErasureReport,
    ImageRecord,
    LoraRecord,
)
from secure_trainer.registry.tombstone import KeyBytes, subject_tag, tag_matches

_SCHEMA = """
CREATE TABLE IF NOT EXISTS loras (
  id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, run_id TEXT NOT NULL, base_model_sha256 TEXT,
  dataset TEXT NOT NULL, owner TEXT NOT NULL, purpose TEXT NOT NULL, legal_basis TEXT NOT NULL,
  created TEXT NOT NULL, expires TEXT, path TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
  dataset TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, subject TEXT,
  source_name TEXT, captions TEXT NOT NULL DEFAULT '[]', imported TEXT NOT NULL,
  PRIMARY KEY (dataset, path));
CREATE INDEX IF NOT EXISTS images_sha ON images(sha256);
CREATE INDEX IF NOT EXISTS images_subject ON images(subject);
CREATE TABLE IF NOT EXISTS lineage (
  lora_id TEXT NOT NULL, image_sha256 TEXT NOT NULL, PRIMARY KEY (lora_id, image_sha256));
CREATE INDEX IF NOT EXISTS lineage_sha ON lineage(image_sha256);
CREATE TABLE IF NOT EXISTS artefacts (
  run_id TEXT NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY (run_id, path));
CREATE TABLE IF NOT EXISTS text_records (
  dataset TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, subject TEXT,
  PRIMARY KEY (dataset, sha256));
CREATE INDEX IF NOT EXISTS text_subject ON text_records(subject);
CREATE TABLE IF NOT EXISTS dataset_expiry (
  dataset TEXT PRIMARY KEY, folder TEXT NOT NULL, expires TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, reason TEXT NOT NULL,
  subject_hmac TEXT, image_hashes TEXT NOT NULL, lora_hashes TEXT NOT NULL);
"""
# Kohya writes these next to the images; they hold latents/captions derived from them.
_IMAGE_CACHE_GLOBS = ("{stem}.npz", "{stem}_*.npz")
_FOLDER_CACHES = ("metadata_cache.json",)
_CAPTIONS = (".txt", ".caption")
# Not data: the registry itself, the audit log, the workspace's own keys, run scratch.
_NOT_DATA_DIRS = frozenset({"audit", ".secure-trainer"})
_NOT_DATA_FILES = frozenset({"registry.sqlite", "registry.sqlite-journal", "registry.sqlite-wal"})


def _migrate_tombstones(db: sqlite3.Connection) -> None:
    """Registries made before keyed tags held a plain sha256 of the subject id: add the keyed
    column and blank the old one (reversible by enumeration, so it must not be kept)."""
    cols = {row[1] for row in db.execute("PRAGMA table_info(tombstones)")}
    if "subject_hmac" not in cols:
        db.execute("ALTER TABLE tombstones ADD COLUMN subject_hmac TEXT")
    if "subject_sha256" in cols:
        db.execute("UPDATE tombstones SET subject_sha256 = NULL")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Registry:
    """The registry at `path` (normally `<workspace>/registry.sqlite`); the workspace root is
    its parent folder. Every method raises DataRejected when the database fails."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.root = path.parent.resolve()
        with self._db() as db:
            db.executescript(_SCHEMA)
            _migrate_tombstones(db)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as conn, conn:
                # SECURITY: deleted rows (names, subject ids) are overwritten, not left in free pages.
                conn.execute("PRAGMA secure_delete = ON")
                conn.execute("PRAGMA foreign_keys = ON")
                yield conn
        except sqlite3.Error:
            raise DataRejected("the registry database could not be read or written") from None

    def _rel(self, path: Path | str) -> str:
        full = Path(path) if Path(path).is_absolute() else self.root / path
        # The last component is not resolved: a symlink inside the workspace is registered (and
        # later unlinked) as itself, never as the file it points to.
        full = full.resolve() if full.name in ("", ".", "..") else full.parent.resolve() / full.name
        try:
            return full.relative_to(self.root).as_posix()
        except ValueError:
            raise DataRejected("a registered path lies outside the workspace") from None

    # -- recording ------------------------------------------------------------------------
    def record_images(self, images: Iterable[ImageRecord]) -> int:
        """Insert or update imported images (idempotent per dataset + path); returns the count."""
        now = _now().isoformat()
        rows = [(im.dataset, self._rel(im.path), im.sha256, im.subject, im.source_name,
                 json.dumps([self._rel(c) for c in im.captions]), now) for im in images]
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO images VALUES (?,?,?,?,?,?,?)", rows)
        return len(rows)

    def record_text(self, dataset: str, jsonl_path: Path,
                    records: Iterable[tuple[str, str | None]]) -> int:
        """Record a text dataset's records as (record content hash, subject or None); replaces
        what was recorded for `dataset` before. Returns the count."""
        rel = self._rel(jsonl_path)
        rows = [(dataset, rel, sha, subject) for sha, subject in records]
        with self._db() as db:
            db.execute("DELETE FROM text_records WHERE dataset = ?", (dataset,))
            db.executemany("INSERT OR REPLACE INTO text_records VALUES (?,?,?,?)", rows)
        return len(rows)

    def set_dataset_expiry(self, dataset: str, folder: Path,
                           expires: datetime | timedelta) -> str:
        """`registry expire` deletes `folder` (the imported dataset), its rows and every run
        trained on it once `expires` is past. Returns the expiry as ISO 8601 (UTC)."""
        when = _now() + expires if isinstance(expires, timedelta) else expires
        iso = when.astimezone(UTC).isoformat()
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO dataset_expiry VALUES (?,?,?)",
                       (dataset, self._rel(folder), iso))
        return iso

    def register_run(self, run_id: str, lora_path: Path, base_model_sha256: str | None,
                     dataset_name: str, image_hashes: Iterable[str],
                     artefacts: Iterable[Artefact] | Mapping[str, Iterable[Path]],
                     owner: str, purpose: str, legal_basis: str,
                     expires: datetime | timedelta | None = None, *,
                     require_expiry: bool = False) -> str:
        """Register the LoRA a run wrote, its lineage (image content hashes) and artefacts.

        Returns the LoRA id (stable for the same run and LoRA path, so re-registering updates).
        Raises ConfigError for an empty owner/purpose/legal basis (or no expiry when
        `require_expiry`), DataRejected for a path
        outside the workspace or an unreadable LoRA file.
        """
        if not (owner.strip() and purpose.strip() and legal_basis.strip()):
            raise ConfigError("owner, purpose and legal basis are required to register a LoRA")
        if require_expiry and expires is None:
            raise ConfigError("an expiry (retention period) is required to register a LoRA")
        rel = self._rel(lora_path)
        try:
            sha = file_sha256(self.root / rel)
        except OSError:
            raise DataRejected("the LoRA file to register could not be read") from None
        lora_id = "L" + hashlib.sha256(f"{run_id}\x00{rel}".encode()).hexdigest()[:15]
        created = _now()
        if isinstance(expires, timedelta):
            expires = created + expires
        items: list[tuple[str, str]] = []
        if isinstance(artefacts, Mapping):
            items = [(ArtefactKind(k).value, self._rel(p)) for k, ps in artefacts.items() for p in ps]
        else:
            items = [(a.kind.value, self._rel(a.path)) for a in artefacts]
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO loras VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (lora_id, sha, run_id, base_model_sha256, dataset_name, owner, purpose,
                        legal_basis, created.isoformat(),
                        expires.astimezone(UTC).isoformat() if expires else None, rel))
            db.execute("DELETE FROM lineage WHERE lora_id = ?", (lora_id,))
            db.executemany("INSERT OR IGNORE INTO lineage VALUES (?,?)",
                           [(lora_id, h) for h in set(image_hashes)])
            db.executemany("INSERT OR REPLACE INTO artefacts VALUES (?,?,?)",
                           [(run_id, kind, path) for kind, path in items])
        return lora_id

    def datasets_under(self, folders: Iterable[Path]) -> list[str]:
        """Names of the imported datasets with an image inside any of `folders`."""
        prefixes = sorted({self._rel(f).rstrip("/") + "/" for f in folders})
        with self._db() as db:
            names = {r[0] for p in prefixes for table in ("images", "text_records")
                     for r in db.execute(
                         f"SELECT DISTINCT dataset FROM {table} WHERE substr(path, 1, ?) = ?",
                         (len(p), p))}
        return sorted(names)

    def dataset_hashes(self, dataset: str) -> list[str]:
        """Content hashes of every image recorded for `dataset` (a run's lineage)."""
        with self._db() as db:
            rows = db.execute("SELECT DISTINCT sha256 FROM images WHERE dataset = ? ORDER BY 1",
                              (dataset,)).fetchall()
        return [r[0] for r in rows]

    # -- queries --------------------------------------------------------------------------
    def loras(self) -> list[LoraRecord]:
        """Every registered LoRA, oldest first."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM loras ORDER BY created, id").fetchall()
        return [LoraRecord(*r) for r in rows]

    def lora(self, lora_id: str) -> tuple[LoraRecord, list[str], list[tuple[str, str]]]:
        """One LoRA, its lineage hashes and its run's artefacts (kind, relative path).

        Raises ConfigError when no LoRA has that id.
        """
        with self._db() as db:
            row = db.execute("SELECT * FROM loras WHERE id = ?", (lora_id,)).fetchone()
            if row is None:
                raise ConfigError("no LoRA with that id in the registry")
            rec = LoraRecord(*row)
            hashes = [r[0] for r in db.execute(
                "SELECT image_sha256 FROM lineage WHERE lora_id = ? ORDER BY 1", (lora_id,))]
            arts = [(r[0], r[1]) for r in db.execute(
                "SELECT kind, path FROM artefacts WHERE run_id = ? ORDER BY 1, 2", (rec.run_id,))]
        return rec, hashes, arts

    def erased_hashes(self) -> frozenset[str]:
        """Content hashes of every image ever erased (a re-import refuses them)."""
        with self._db() as db:
            rows = db.execute("SELECT image_hashes FROM tombstones").fetchall()
        return frozenset(h for (blob,) in rows for h in json.loads(blob))

    def tombstone_tags(self) -> list[str]:
        """The keyed subject tags of every subject tombstone, oldest first."""
        with self._db() as db:
            rows = db.execute("SELECT subject_hmac FROM tombstones WHERE subject_hmac IS NOT NULL "
                              "ORDER BY seq").fetchall()
        return [r[0] for r in rows]

    def is_erased_subject(self, subject: str, tombstone_key: KeyBytes) -> bool:
        """Whether a tombstone names `subject` (checked with the key; the id is never stored)."""
        return any(tag_matches(subject, tombstone_key, t) for t in self.tombstone_tags())

    def plan_subject(self, subject: str) -> ErasurePlan:
        """Everything derived from `subject`: its images (by content hash, in every dataset),
        their captions and caches, every LoRA trained on any of them and those runs' artefacts."""
        with self._db() as db:
            hashes = sorted({r[0] for r in db.execute(
                "SELECT sha256 FROM images WHERE subject = ?", (subject,))})
            images = self._images_with(db, hashes)
            # Text records by content hash, in every text dataset that holds that record.
            texts = sorted({(r[0], r[1]) for r in db.execute(
                "SELECT t.path, t.sha256 FROM text_records t WHERE t.sha256 IN "
                "(SELECT sha256 FROM text_records WHERE subject = ?)", (subject,))})
            text_hashes = sorted({h for _, h in texts})
            lora_ids = sorted({r[0] for h in hashes + text_hashes for r in db.execute(
                "SELECT lora_id FROM lineage WHERE image_sha256 = ?", (h,))})
            loras = self._loras_by_id(db, lora_ids)
            items = self._lora_items(db, loras) + self._image_items(images)
        items += [ErasureItem(ArtefactKind.TEXT_RECORD, "", h, path) for path, h in texts]
        items += self._copies(set(hashes), images, {i.rel_path for i in items})
        return ErasurePlan("subject", tuple(loras), tuple(sorted(hashes + text_hashes)),
                           tuple(items), subject=subject)

    def _copies(self, hashes: set[str], images: list[ImageRecord],
                planned: set[str]) -> list[ErasureItem]:
        """Every other file in the workspace with the content of one of `hashes` (a copy put
        there outside `data import`), with the captions and caches beside it.

        Only files of a size one of the images has are hashed, unless an image file is already
        gone (then every file is). Symlinks are never followed; the registry and the audit log
        are not data.
        """
        if not hashes:
            return []
        sizes: set[int] | None = set()
        for im in images:
            try:
                sizes.add((self.root / im.path).lstat().st_size)  # type: ignore[union-attr]
            except OSError:
                sizes = None
                break
        found: list[ErasureItem] = []
        for top, dirs, names in os.walk(self.root, followlinks=False):
            rel_top = Path(top).relative_to(self.root)
            if rel_top == Path("."):
                dirs[:] = [d for d in dirs if d not in _NOT_DATA_DIRS]
            for name in sorted(names):
                full = Path(top) / name
                rel = (rel_top / name).as_posix()
                if rel in planned or rel_top == Path(".") and name in _NOT_DATA_FILES:
                    continue
                try:
                    st = full.lstat()
                    if not stat.S_ISREG(st.st_mode) or (sizes is not None
                                                        and st.st_size not in sizes):
                        continue
                    digest = file_sha256(full)
                except OSError:
                    continue
                if digest in hashes:
                    found.append(ErasureItem(ArtefactKind.COPY, "", digest, rel))
                    found += [ErasureItem(ArtefactKind.CAPTION if s.suffix in _CAPTIONS
                                          else ArtefactKind.CACHE, "", digest,
                                          (rel_top / s.name).as_posix())
                              for s in sorted(Path(top).glob(glob_escape(full.stem) + ".*"))
                              if s.name != name and (rel_top / s.name).as_posix() not in planned
                              and (s.suffix in _CAPTIONS or s.suffix == ".npz")]
        return found

    def plan_expired(self, now: datetime | None = None) -> ErasurePlan:
        """Every LoRA whose expiry is past, with its run's artefacts; every dataset whose expiry
        is past (its files, captions and caches, then its folder) with every LoRA trained on it."""
        cutoff = (now or _now()).astimezone(UTC).isoformat()
        with self._db() as db:
            ids = {r[0] for r in db.execute(
                "SELECT id FROM loras WHERE expires IS NOT NULL AND expires <= ?", (cutoff,))}
            expired = db.execute("SELECT dataset, folder FROM dataset_expiry WHERE expires <= ? "
                                 "ORDER BY dataset", (cutoff,)).fetchall()
            images: list[ImageRecord] = []
            text_hashes: set[str] = set()
            for dataset, _ in expired:
                images += [ImageRecord(ds, path, sha, subj, tuple(json.loads(caps)), src)
                           for ds, path, sha, subj, src, caps, _ in db.execute(
                               "SELECT * FROM images WHERE dataset = ? ORDER BY path", (dataset,))]
                text_hashes |= {r[0] for r in db.execute(
                    "SELECT sha256 FROM text_records WHERE dataset = ?", (dataset,))}
            for h in sorted({im.sha256 for im in images} | text_hashes):
                ids |= {r[0] for r in db.execute(
                    "SELECT lora_id FROM lineage WHERE image_sha256 = ?", (h,))}
            loras = self._loras_by_id(db, sorted(ids))
            items = self._lora_items(db, loras)
        items += self._image_items(images)
        items += [ErasureItem(ArtefactKind.DATASET, name, None, folder)
                  for name, folder in expired]
        return ErasurePlan("expiry", tuple(loras), (), tuple(items),
                           datasets=tuple(name for name, _ in expired))

    @staticmethod
    def _images_with(db: sqlite3.Connection, hashes: list[str]) -> list[ImageRecord]:
        out = []
        for h in hashes:
            for ds, path, sha, subj, src, caps, _ in db.execute(
                    "SELECT * FROM images WHERE sha256 = ? ORDER BY dataset, path", (h,)):
                out.append(ImageRecord(ds, path, sha, subj, tuple(json.loads(caps)), src))
        return out

    @staticmethod
    def _loras_by_id(db: sqlite3.Connection, ids: list[str]) -> list[LoraRecord]:
        return [LoraRecord(*db.execute("SELECT * FROM loras WHERE id = ?", (i,)).fetchone())
                for i in ids]

    @staticmethod
    def _lora_items(db: sqlite3.Connection, loras: list[LoraRecord]) -> list[ErasureItem]:
        items = [ErasureItem(ArtefactKind.LORA, lo.id, lo.sha256, lo.path) for lo in loras]
        whole: list[ErasureItem] = []
        for run_id in sorted({lo.run_id for lo in loras}):
            for kind, path in db.execute(
                    "SELECT kind, path FROM artefacts WHERE run_id = ? ORDER BY path", (run_id,)):
                item = ErasureItem(ArtefactKind(kind), run_id, None, path)
                # Whole run folders go last: their files are deleted (and counted) by kind first.
                (whole if item.kind is ArtefactKind.RUN else items).append(item)
        return items + whole

    def _image_items(self, images: list[ImageRecord]) -> list[ErasureItem]:
        items: list[ErasureItem] = []
        folders: set[PurePosixPath] = set()
        for im in images:
            items.append(ErasureItem(ArtefactKind.DATASET_IMAGE, "", im.sha256, im.path))
            items.extend(ErasureItem(ArtefactKind.CAPTION, "", im.sha256, c) for c in im.captions)
            rel = PurePosixPath(im.path)
            folders.add(rel.parent)
            for pattern in _IMAGE_CACHE_GLOBS:
                for hit in sorted((self.root / rel.parent).glob(pattern.format(stem=rel.stem))):
                    items.append(ErasureItem(ArtefactKind.CACHE, "", im.sha256,
                                             self._rel(hit)))
        for folder in sorted(folders):
            for name in _FOLDER_CACHES:
                if (self.root / folder / name).exists():
                    items.append(ErasureItem(ArtefactKind.CACHE, "", None, (folder / name).as_posix()))
        return items

    # -- deletion -------------------------------------------------------------------------
    def erase(self, plan: ErasurePlan, *, tombstone_key: KeyBytes | None = None) -> ErasureReport:
        """Delete every item of `plan` inside the workspace, drop its rows, add a tombstone.

        A subject erasure needs `tombstone_key` (from Vault, via the caller): the tombstone keeps
        HMAC(key, subject id), never the id or a plain hash of it. Symlinks are removed, never
        followed. Raises ConfigError without a key (before deleting anything), DataRejected when
        a path would leave the workspace or a deletion fails (what was deleted before stays
        deleted; re-run to finish).
        """
        tag: str | None = None
        if plan.subject is not None:
            if tombstone_key is None:
                raise ConfigError("erasing a subject needs the tombstone key")
            try:
                tag = subject_tag(plan.subject, tombstone_key)
            except ValueError:
                raise ConfigError("the tombstone key is too short") from None
        report = ErasureReport(plan, subject_tag=tag)
        self._drop_text_records(plan, report)
        for item in plan.items:
            if item.kind is ArtefactKind.TEXT_RECORD:
                continue
            target = self.root / item.rel_path
            # SECURITY: the folder holding the target must be inside the workspace, and so must
            # the target itself unless it is a symlink (which is unlinked, never followed).
            inside = target.parent.resolve().is_relative_to(self.root) and (
                target.is_symlink() or target.resolve().is_relative_to(self.root))
            if not inside:
                raise DataRejected("an erasure target lies outside the workspace")
            try:
                if target.is_symlink() or target.is_file():
                    target.unlink()
                    report.files_deleted += 1
                elif target.is_dir():
                    shutil.rmtree(target)
                    report.dirs_deleted += 1
                else:
                    report.already_gone += 1
                    continue
            except OSError:
                raise DataRejected("an erasure target could not be deleted") from None
            report.by_kind[item.kind.value] += 1
        lora_ids = [lo.id for lo in plan.loras]
        run_ids = sorted({lo.run_id for lo in plan.loras})
        with self._db() as db:
            for lora_id in lora_ids:
                db.execute("DELETE FROM lineage WHERE lora_id = ?", (lora_id,))
                db.execute("DELETE FROM loras WHERE id = ?", (lora_id,))
            for run_id in run_ids:
                if not db.execute("SELECT 1 FROM loras WHERE run_id = ?", (run_id,)).fetchone():
                    db.execute("DELETE FROM artefacts WHERE run_id = ?", (run_id,))
            for h in plan.image_hashes:
                db.execute("DELETE FROM images WHERE sha256 = ?", (h,))
                db.execute("DELETE FROM text_records WHERE sha256 = ?", (h,))
            for dataset in plan.datasets:
                for table in ("images", "text_records", "dataset_expiry"):
                    db.execute(f"DELETE FROM {table} WHERE dataset = ?", (dataset,))
            db.execute("INSERT INTO tombstones (ts, reason, subject_hmac, image_hashes, "
                       "lora_hashes) VALUES (?,?,?,?,?)",
                       (_now().isoformat(), plan.reason, tag,
                        json.dumps(list(plan.image_hashes)),
                        json.dumps(sorted(lo.sha256 for lo in plan.loras))))
        with self._db() as db:
            db.execute("VACUUM")  # rewrite the file so no page still holds erased rows
        return report

    def _drop_text_records(self, plan: ErasurePlan, report: ErasureReport) -> None:
        """Rewrite each JSONL file of the plan without its planned records (atomically: a
        temporary file beside it, fsynced, renamed over it); counts removed records by kind."""
        by_file: dict[str, set[str]] = {}
        for item in plan.items:
            if item.kind is ArtefactKind.TEXT_RECORD and item.sha256:
                by_file.setdefault(item.rel_path, set()).add(item.sha256)
        for rel, hashes in sorted(by_file.items()):
            target = self.root / rel
            if not target.parent.resolve().is_relative_to(self.root):
                raise DataRejected("an erasure target lies outside the workspace")
            try:
                removed = _rewrite_jsonl_without(target, hashes)
            except FileNotFoundError:
                report.already_gone += 1
                continue
            except (OSError, ValueError):
                raise DataRejected("a text dataset could not be rewritten") from None
            report.by_kind[ArtefactKind.TEXT_RECORD.value] += removed


def _rewrite_jsonl_without(path: Path, hashes: set[str]) -> int:
    """Replace the JSONL file `path` (never followed if a symlink) by a copy without the
    records whose `text_record_sha256` is in `hashes`; returns how many were removed."""
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        with os.fdopen(fd, "rb") as fh:
            lines = fh.read().split(b"\n")
        kept = [ln for ln in lines if ln.strip()
                and text_record_sha256(json.loads(ln)) not in hashes]
        removed = sum(1 for ln in lines if ln.strip()) - len(kept)
        if not removed:
            return 0
        tmp = f".{path.name}.erase-tmp"
        try:
            os.unlink(tmp, dir_fd=dfd)
        except FileNotFoundError:
            pass
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o600, dir_fd=dfd)
        with os.fdopen(out, "wb") as fh:
            fh.write(b"".join(ln + b"\n" for ln in kept))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)
        return removed
    finally:
        os.close(dfd)
