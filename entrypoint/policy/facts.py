"""The typed fact document the policy engine evaluates: one frozen dataclass per section.

Facts are counts, booleans, kinds and names of system objects (interfaces, filesystem types,
capabilities) — never a secret, a data path, a file name, a caption or a metadata value, because
the document is hashed into the audit log and printed by `policy check --json`.
coupling: the CEL schema (field names and kinds) is derived from these dataclasses; renaming a
field breaks every rule that reads it (rules are checked against the schema at load time).
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_type_hints

__all__ = [
    "SECTIONS",
    "SECTION_TYPES",
    "AuditFacts",
    "DatasetFacts",
    "Facts",
    "FieldSpec",
    "FsFacts",
    "GpuFacts",
    "ModelFacts",
    "NetworkFacts",
    "ProcessFacts",
    "TrainingFacts",
    "VaultFacts",
    "fact_schema",
    "sample_facts",
]

FieldKind = Literal["bool", "int", "float", "str", "list", "map"]


@dataclass(frozen=True)
class ProcessFacts:
    """The init process and the privilege drop configured for the training child."""

    uid: int  # real uid
    euid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups
    cap_effective: tuple[str, ...]  # capability names, e.g. "CAP_SYS_ADMIN"
    cap_bounding: tuple[str, ...]
    no_new_privs: bool
    seccomp: str  # "disabled" | "strict" | "filter" | "unknown"
    is_pid1: bool
    in_container: bool
    drop_configured: bool  # the training child drops to drop_uid/drop_gid
    drop_uid: int | None
    drop_gid: int | None
    drop_uid_in_passwd: bool | None  # the drop uid has a passwd entry (None: no drop configured)
    core_limit: int  # soft RLIMIT_CORE of this process in bytes, -1 for unlimited
    swap_on: bool  # /proc/swaps lists an active swap area (memory may reach a disk)
    retention_days: int | None = None
    """ST_RETENTION_DAYS: days until `registry expire` deletes the run's outputs (None: unset or
    not a positive whole number)."""


@dataclass(frozen=True)
class FsFacts:
    """Root filesystem, /tmp and the encrypted workspace."""

    root_readonly: bool
    tmp_fstype: str | None
    tmp_tmpfs: bool
    tmp_noexec: bool
    workspace_configured: bool
    workspace_mounted: bool
    workspace_fstype: str | None  # fstype of the mount at the workspace mountpoint
    workspace_options: tuple[str, ...]  # per-mount options of that mount
    workspace_backend: str | None  # "gocryptfs" | "plain" | None (no workspace configured)
    cipher_dir_exists: bool | None
    cipher_dir_initialized: bool | None  # gocryptfs.conf present
    cipher_dir_mode: str | None  # octal, e.g. "0700"
    cipher_dir_private: bool | None  # no group/other permission bits
    free_bytes: int | None  # free space where the cipher dir (or workspace) lives


@dataclass(frozen=True)
class NetworkFacts:
    """Network namespace of the process: interfaces, routes, DNS, the egress canary."""

    interfaces: tuple[str, ...]  # interface names other than lo
    default_route: bool  # an IPv4 or IPv6 default route exists
    dns_configured: bool  # resolv.conf names a nameserver
    canary_configured: bool
    canary_reachable: bool | None  # TCP connect to the canary succeeded; None if none configured


@dataclass(frozen=True)
class GpuFacts:
    """NVIDIA devices and whether torch sees CUDA."""

    devices: int  # /dev/nvidiaN nodes
    driver_version: str | None
    torch_cuda: bool


@dataclass(frozen=True)
class VaultFacts:
    """How the run will reach Vault (from the standard env); no address, no token."""

    address_configured: bool
    address_scheme: str | None  # "https" | "http" | other
    address_loopback: bool | None
    ca_configured: bool  # VAULT_CACERT / VAULT_CAPATH set and present
    tls_skip_verify: bool
    auth_method: str | None  # token | approle | kubernetes | jwt
    token_ttl: int | None  # seconds, when a token was already looked up
    token_renewable: bool | None


@dataclass(frozen=True)
class AuditFacts:
    """Audit mode and the kernel audit state."""

    mode: str  # "kernel" | "host" | "app"
    auditctl_available: bool
    kernel_enabled: bool | None  # `auditctl -s` enabled != 0; None when it could not be asked
    rules_loaded: int | None  # kernel rules keyed secure-trainer


@dataclass(frozen=True)
class ModelFacts:
    """Format of the base model and of the other weight files the run loads."""

    format: str  # diffusers-safetensors | diffusers-mixed | diffusers-pickle | safetensors | pickle | unknown | missing
    pickle_files: int  # weight files in pickle (or torch zip) format
    weight_files: int
    vae_format: str | None  # safetensors | pickle | unknown | missing | None (no separate VAE)
    network_weights_format: str | None  # LoRA weights to resume from


@dataclass(frozen=True)
class DatasetFacts:
    """Counts over the training images and captions; never names, paths or values."""

    subsets: int
    missing_dirs: int
    images: int
    captions: int
    files_by_ext: dict[str, int]
    unreadable_images: int
    images_with_exif: int
    images_with_gps: int
    images_with_serial: int
    images_with_xmp: int
    images_with_iptc: int
    images_with_png_text: int
    images_with_comment: int
    captions_with_pii: int
    pii_by_type: dict[str, int]  # PII type label -> number of findings (captions and config)
    config_strings_with_pii: int  # class_tokens / caption_prefix / caption_suffix with PII
    # A text (JSONL) dataset of `run --trainer llm`; the image counts above are then 0.
    kind: str = "images"  # images | text
    records: int = 0  # JSONL records the trainer will read
    records_with_pii: int = 0  # records whose text holds PII now (found and not redacted)
    records_without_subject: int = 0  # records with no subject id (user-level DP needs one)
    subjects: int = 0  # distinct subject ids
    import_report: bool | None = None  # text: `data import-text` left its report beside it
    pii_mode: str | None = None  # text: the import's PII mode (redact | reject | report)
    # From `data import`'s import-report.json beside the subsets (counts of imported datasets):
    people_datasets: int = 0  # marked as showing people (--people, or subjects recorded)
    people_not_blurred: int = 0  # of those, imported without --blur-faces
    faces_haar_fallback: int = 0  # imported with --blur-faces on the Haar fallback (no model)
    faces_found_not_blurred: int = 0  # faces the import's scan found and left visible (no blur)


@dataclass(frozen=True)
class TrainingFacts:
    """Training settings that decide what leaves the run: logs, metadata, DP, output place."""

    log_level: str
    metadata_mode: str  # redacted | full | none
    dp_enabled: bool
    dp_target_epsilon: float | None
    output_in_workspace: bool
    logging_in_workspace: bool | None  # None when no logging_dir is set
    model_in_workspace: bool  # the base model resolves (symlinks, `..`) inside the workspace
    dataset_in_workspace: bool  # every subset folder resolves inside the workspace
    trainer: str = "kohya"  # kohya (image LoRA) | llm (train-llm)
    dp_unit: str = "image"  # the DP privacy unit: image (kohya), subject | record (llm)
    canaries: int = 0  # canary secrets planted for the memorization audit (llm)


# coupling: section names are the CEL root identifiers; gatherers/__init__.py has one per name.
SECTION_TYPES: dict[str, type] = {
    "process": ProcessFacts, "fs": FsFacts, "network": NetworkFacts, "gpu": GpuFacts,
    "vault": VaultFacts, "audit": AuditFacts, "model": ModelFacts, "dataset": DatasetFacts,
    "training": TrainingFacts,
}
SECTIONS: tuple[str, ...] = tuple(SECTION_TYPES)


@dataclass(frozen=True)
class Facts:
    """The fact document of one phase; a section is None when it was not gathered."""

    process: ProcessFacts | None = None
    fs: FsFacts | None = None
    network: NetworkFacts | None = None
    gpu: GpuFacts | None = None
    vault: VaultFacts | None = None
    audit: AuditFacts | None = None
    model: ModelFacts | None = None
    dataset: DatasetFacts | None = None
    training: TrainingFacts | None = None

    @property
    def gathered(self) -> frozenset[str]:
        """Names of the sections present in this document."""
        return frozenset(n for n in SECTIONS if getattr(self, n) is not None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the gathered sections (tuples become lists)."""
        return {n: asdict(getattr(self, n)) for n in SECTIONS if getattr(self, n) is not None}

    def sha256(self) -> str:
        """Hash of the canonical JSON form; recorded in the decision instead of the facts."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class FieldSpec:
    """One fact field as the rule checker sees it."""

    kind: FieldKind
    nullable: bool


def _spec_of(annotation: Any) -> FieldSpec:
    args = typing.get_args(annotation)
    nullable = isinstance(annotation, types.UnionType) and type(None) in args
    base = next((a for a in args if a is not type(None)), annotation) if nullable else annotation
    origin = typing.get_origin(base) or base
    kinds: dict[Any, FieldKind] = {bool: "bool", int: "int", float: "float", str: "str",
                                   tuple: "list", list: "list", dict: "map"}
    return FieldSpec(kind=kinds[origin], nullable=nullable)


def fact_schema() -> dict[str, dict[str, FieldSpec]]:
    """Section -> field -> FieldSpec, derived from the dataclasses above."""
    schema: dict[str, dict[str, FieldSpec]] = {}
    for name, cls in SECTION_TYPES.items():
        hints = get_type_hints(cls)
        schema[name] = {f.name: _spec_of(hints[f.name]) for f in fields(cls)}
    return schema


_SAMPLES: dict[FieldKind, Any] = {"bool": False, "int": 1, "float": 1.0, "str": "x",
                                  "list": [], "map": {}}


def sample_facts() -> dict[str, dict[str, Any]]:
    """A well-typed, non-null placeholder document used to type-check rules at load time."""
    return {section: {name: _SAMPLES[spec.kind] for name, spec in specs.items()}
            for section, specs in fact_schema().items()}
