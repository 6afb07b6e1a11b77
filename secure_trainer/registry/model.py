"""Registry records: artefact kinds, LoRA and image rows, erasure plans and reports.

Plain frozen data; no I/O. An `ErasurePlan` keeps the subject id only in memory (never in its
repr) so the tombstone can be keyed at erase time. Must never hold a file name in an audit field.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class ArtefactKind(str, Enum):
    """What a registered run artefact is; erasure reports count per kind."""

    LORA = "lora"
    STATE = "state"
    TENSORBOARD = "tensorboard"
    CACHE = "cache"
    MANIFEST = "manifest"
    SAMPLE = "sample"
    DATASET_IMAGE = "dataset_image"
    CAPTION = "caption"
    COPY = "copy"
    """A file with the content of a subject's image found elsewhere in the workspace."""
    DP_RECORD = "dp_record"
    REPORT = "report"
    LOG = "log"
    TEXT_RECORD = "text_record"
    """One record of a text (JSONL) dataset: erased by rewriting the file without it."""
    DATASET = "dataset"
    """A whole imported dataset folder (expiry): deleted after its files are counted by kind."""
    RUN = "run"
    """A whole run folder: deleted last, so nothing written into it after sealing survives."""
    OTHER = "other"


@dataclass(frozen=True)
class Artefact:
    """A file or folder a run produced, by kind (absolute or workspace-relative path)."""

    kind: ArtefactKind
    path: Path


@dataclass(frozen=True)
class LoraRecord:
    """One registered LoRA. `path` is relative to the workspace root."""

    id: str
    sha256: str
    run_id: str
    base_model_sha256: str | None
    dataset: str
    owner: str
    purpose: str
    legal_basis: str
    created: str
    expires: str | None
    path: str


@dataclass(frozen=True)
class ImageRecord:
    """One imported dataset image (path relative to the workspace root)."""

    dataset: str
    path: str
    sha256: str
    subject: str | None
    captions: tuple[str, ...] = ()
    source_name: str | None = None  # the original relative name; stays inside the workspace


@dataclass(frozen=True)
class ErasureItem:
    """One thing an erasure deletes: its kind, an id (LoRA id or run id, else ''), a hash, a path."""

    kind: ArtefactKind
    ref: str
    sha256: str | None
    rel_path: str


@dataclass(frozen=True)
class ErasurePlan:
    """What an erasure (by subject) or an expiry run would delete."""

    reason: str  # "subject" or "expiry"
    loras: tuple[LoraRecord, ...]
    image_hashes: tuple[str, ...]
    items: tuple[ErasureItem, ...]

    datasets: tuple[str, ...] = ()
    """Datasets deleted whole (expiry): their registry rows go, their hashes stay re-importable."""

    subject: str | None = field(default=None, repr=False)
    """The subject id itself, in memory only: keyed into the tombstone at erase time."""


@dataclass
class ErasureReport:
    """What an erasure did; `audit_fields()` is the tombstone (keyed tags, hashes, counts)."""

    plan: ErasurePlan
    subject_tag: str | None = None
    files_deleted: int = 0
    dirs_deleted: int = 0
    already_gone: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)

    def audit_fields(self) -> dict[str, object]:
        """Fields for the app audit log's `erasure` event: ids, hashes, counts — no names."""
        return {
            "reason": self.plan.reason,
            "subject_hmac": self.subject_tag,
            "loras": [{"id": lo.id, "sha256": lo.sha256} for lo in self.plan.loras],
            "image_sha256": list(self.plan.image_hashes),
            "datasets": len(self.plan.datasets),
            "deleted_by_kind": dict(sorted(self.by_kind.items())),
            "files_deleted": self.files_deleted,
            "dirs_deleted": self.dirs_deleted,
        }
