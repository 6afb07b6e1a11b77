"""Registering a sealed run: every artefact under its run folder, the base model's hash, the
datasets and content hashes it read, owner, purpose, legal basis and an expiry.

Erasure (`registry erase|expire`) can only delete what is registered here, so the run folder is
registered file by file (counted by kind) and then as a whole (`run`), which also takes anything
written into it after sealing.
Must never: follow a symlink the trainer left (links are registered, and later unlinked, as
themselves), or put a name or path in an error message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath

from entrypoint.errors import ConfigError, TrainingError
from secure_trainer.registry import Artefact, ArtefactKind, Registry, tree_sha256

_STRICT = "strict"


@dataclass(frozen=True)
class Governance:
    """Who may hold a run's outputs, why, on what legal basis, and for how long."""

    owner: str
    purpose: str
    legal_basis: str
    retention_days: int | None
    """Days until `registry expire` deletes the run; None = no expiry (refused under strict)."""
    require_expiry: bool = False

    @classmethod
    def for_policy(cls, policy: str, *, owner: str, purpose: str, legal_basis: str,
                   retention_days: int | None) -> Governance:
        """The strict profile registers no run without an expiry (the others allow none)."""
        return cls(owner, purpose, legal_basis, retention_days, require_expiry=policy == _STRICT)


def retention_from_env(env: Mapping[str, str]) -> int | None:
    """ST_RETENTION_DAYS as a positive day count; None when unset. Raises ConfigError for a
    malformed value."""
    raw = env.get("ST_RETENTION_DAYS", "").strip()
    if not raw:
        return None
    try:
        days = int(raw)
    except ValueError:
        raise ConfigError("ST_RETENTION_DAYS must be a whole number of days") from None
    if days <= 0:
        raise ConfigError("ST_RETENTION_DAYS must be at least 1")
    return days


def retention_days_option(flag: int | None, env: Mapping[str, str]) -> int | None:
    """A `--retention-days` flag, else ST_RETENTION_DAYS (None: no expiry). Raises ConfigError."""
    if flag is None:
        return retention_from_env(env)
    if flag <= 0:
        raise ConfigError("--retention-days must be at least 1")
    return flag


def classify(rel: PurePosixPath) -> ArtefactKind:
    """The kind of one file of a run folder, from its place and name (for counts by kind)."""
    name = rel.name
    if any(p == "state" or p.endswith("-state") for p in rel.parts[:-1]):
        return ArtefactKind.STATE
    if name.endswith(".safetensors"):
        return ArtefactKind.LORA
    if "tfevents" in name or any(p in ("logs", "tensorboard", "tb") for p in rel.parts[:-1]):
        return ArtefactKind.TENSORBOARD
    if name.endswith(".dp.json"):
        return ArtefactKind.DP_RECORD
    if name == "manifest.json":
        return ArtefactKind.MANIFEST
    if "mia" in name or "report" in name:
        return ArtefactKind.REPORT
    if name.endswith(".log"):
        return ArtefactKind.LOG
    return ArtefactKind.OTHER


def run_artefacts(run_dir: Path, *, skip: Sequence[Path] = ()) -> list[Artefact]:
    """Every file (and symlink) under `run_dir` by kind, its manifest (even before it is written),
    then `run_dir` itself as `run`.

    Never descends into a symlinked folder: the link is an artefact of its own.
    """
    skipped = {os.path.normpath(p) for p in skip}
    out: list[Artefact] = []
    for top, dirs, names in os.walk(run_dir, followlinks=False):
        links = [d for d in dirs if os.path.islink(os.path.join(top, d))]
        dirs[:] = sorted(d for d in dirs if d not in links)
        for name in sorted([*names, *links]):
            full = Path(top) / name
            if os.path.normpath(full) in skipped:
                continue
            out.append(Artefact(classify(PurePosixPath(full.relative_to(run_dir).as_posix())),
                                full))
    manifest = run_dir / "manifest.json"
    if not any(a.path == manifest for a in out):
        # Written after registration; registered ahead so it is erased (and counted) by kind.
        out.append(Artefact(ArtefactKind.MANIFEST, manifest))
    out.append(Artefact(ArtefactKind.RUN, run_dir))
    return out


def register_sealed_run(*, registry_path: Path, root: Path, run_id: str, run_dir: Path,
                        lora: Path, base_model: Path, data_dirs: Sequence[Path],
                        image_hashes: Sequence[str], governance: Governance) -> str:
    """Register the run and its lineage; returns the LoRA id.

    `base_model` and `data_dirs` may be relative to the workspace `root`. Raises ConfigError
    (missing governance or expiry), TrainingError (base model unreadable), DataRejected
    (registry or a path outside the workspace).
    """
    def here(p: Path) -> Path:
        return p if p.is_absolute() else root / p

    try:
        base_sha = tree_sha256(here(base_model))
    except OSError:
        raise TrainingError("the base model could not be hashed for the registry") from None
    registry = Registry(registry_path)
    datasets = registry.datasets_under([here(d) for d in data_dirs])
    expires = (timedelta(days=governance.retention_days)
               if governance.retention_days is not None else None)
    return registry.register_run(
        run_id, lora, base_sha, ",".join(datasets) or "unregistered", image_hashes,
        run_artefacts(run_dir, skip=[lora]), governance.owner, governance.purpose,
        governance.legal_basis, expires, require_expiry=governance.require_expiry)
