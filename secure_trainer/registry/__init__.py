"""The LoRA registry: every LoRA with its data lineage, owner, purpose and expiry; erasure.

Split by concern: `model` (records), `files` (content hashes, subjects.csv), `tombstone`
(keyed subject tags), `store` (the sqlite registry, planning and deletion).
Must never log, and never put a name or path in an error message.
"""

from __future__ import annotations

from secure_trainer.registry.files import (
    file_sha256,
    jsonl_record_hashes,
    read_subjects,
    text_record_sha256,
    tree_sha256,
)
from secure_trainer.registry.model import (
    Artefact,
    ArtefactKind,
    ErasureItem,
    ErasurePlan,
    ErasureReport,
    ImageRecord,
    LoraRecord,
)
from secure_trainer.registry.store import Registry
from secure_trainer.registry.tombstone import subject_tag, tag_matches

__all__ = [
    "Artefact", "ArtefactKind", "ErasureItem", "ErasurePlan", "ErasureReport", "ImageRecord",
    "LoraRecord", "Registry", "file_sha256", "jsonl_record_hashes", "read_subjects",
    "subject_tag", "tag_matches", "text_record_sha256", "tree_sha256",
]
