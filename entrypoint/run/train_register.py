"""Registering a LoRA made by plain `secure-trainer train` inside an open workspace.

`train` writes into the workspace when its output dir lies below ST_MOUNTPOINT and that is a
mounted gocryptfs workspace; then the LoRA is registered like a sealed run: the content hashes
of the images it read, the base model's hash, every artefact of its output (files and folders
of the output dir named after `--output_name`, and the logging dir when inside the workspace),
owner/purpose/legal basis (ST_OWNER, ST_PURPOSE, ST_LEGAL_BASIS) and an expiry
(ST_RETENTION_DAYS). Outside a workspace `train` says in one line that it did not register.
When `train` is the child of `run` (RUN_CHILD_ENV set by trainer_child.py) nothing is done
here: `run` seals and registers itself.
Must never: put a name or path in a message, or register a path outside the workspace.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from entrypoint.run.seal import Governance, classify, retention_from_env
from secure_trainer.registry import Artefact, ArtefactKind, Registry, file_sha256, tree_sha256

RUN_CHILD_ENV = "SECURE_TRAINER_RUN_CHILD"
"""Set to "1" in the environment of `run`'s trainer child: `run` registers, `train` must not."""
REGISTRY_FILE = "registry.sqlite"  # coupling: data_cmd.REGISTRY_FILE (no import: no cycle)
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
NOT_REGISTERED = ("registry: not registered (the output dir is not inside an open workspace; "
                  "set ST_MOUNTPOINT to the mounted workspace to register)")


@dataclass(frozen=True)
class TrainTarget:
    """Where plain `train` registers: the workspace root and the governance from env."""

    root: Path
    governance: Governance


def target_for(output_dir: Path, env: Mapping[str, str]) -> TrainTarget | None:
    """The workspace to register in, or None (not inside one, or `train` runs under `run`).

    Checked before training so a malformed ST_RETENTION_DAYS fails (ConfigError) before any
    output is written.
    """
    if env.get(RUN_CHILD_ENV) == "1":
        return None
    raw = env.get("ST_MOUNTPOINT", "")
    if not raw or not Path(raw).is_dir():
        return None
    from entrypoint.workspace.mounts import is_fuse_mounted

    root = Path(raw).resolve()
    if not output_dir.resolve().is_relative_to(root) or not is_fuse_mounted(root,
                                                                             "fuse.gocryptfs"):
        return None
    return TrainTarget(root, Governance(
        owner=env.get("ST_OWNER", "unspecified"), purpose=env.get("ST_PURPOSE", "unspecified"),
        legal_basis=env.get("ST_LEGAL_BASIS", "unspecified"),
        retention_days=retention_from_env(env)))


def _image_hashes(settings: Any) -> list[str]:
    files = sorted(p for ds in settings.datasets for sub in ds.subsets
                   for p in Path(sub.image_dir).iterdir()
                   if p.is_file() and not p.is_symlink() and p.suffix.lower() in _IMAGE_SUFFIXES)
    return sorted({file_sha256(p) for p in files})


def output_artefacts(output_dir: Path, output_name: str,
                     logging_dir: Path | None = None) -> list[Artefact]:
    """The files (by kind) and folders of `output_dir` named after `output_name` (the LoRA,
    `-step`/`-epoch` LoRAs, `-state` dirs, DP records), plus `logging_dir` as tensorboard."""
    out: list[Artefact] = []
    for entry in sorted(output_dir.iterdir()):
        name = entry.name
        if not (name == output_name or name.startswith((output_name + "-", output_name + "."))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            for top, dirs, names in os.walk(entry, followlinks=False):
                dirs.sort()
                for n in sorted(names):
                    rel = PurePosixPath((Path(top) / n).relative_to(output_dir).as_posix())
                    out.append(Artefact(classify(rel), Path(top) / n))
            kind = ArtefactKind.STATE if name.endswith("-state") else ArtefactKind.OTHER
            out.append(Artefact(kind, entry))
        else:
            out.append(Artefact(classify(PurePosixPath(name)), entry))
    if logging_dir is not None and logging_dir.is_dir():
        out.append(Artefact(ArtefactKind.TENSORBOARD, logging_dir))
    return out


def register_train(target: TrainTarget, settings: Any, lora: Path) -> str:
    """Register the LoRA `train` wrote; returns its id. Raises TrainingError (base model
    unreadable), DataRejected (registry, a path outside the workspace)."""
    from entrypoint.errors import TrainingError

    root = target.root
    try:
        base_sha = tree_sha256(Path(settings.pretrained_model_name_or_path))
        hashes = _image_hashes(settings)
    except OSError:
        raise TrainingError("the base model or dataset could not be hashed for the registry") \
            from None
    output_dir = Path(settings.output_dir).resolve()
    logging_dir = getattr(settings, "logging_dir", None)
    if logging_dir is not None and not Path(logging_dir).resolve().is_relative_to(root):
        logging_dir = None
    # Stable per output dir + name: re-training the same output updates its registration.
    rel = output_dir.relative_to(root).as_posix()
    run_id = "train-" + hashlib.sha256(f"{rel}\x00{settings.output_name}".encode()).hexdigest()[:12]
    registry = Registry(root / REGISTRY_FILE)
    datasets = registry.datasets_under([d for d in (Path(sub.image_dir).resolve()
                                                    for ds in settings.datasets
                                                    for sub in ds.subsets)
                                        if d.is_relative_to(root)])
    gov = target.governance
    artefacts = [a for a in output_artefacts(
        output_dir, settings.output_name, Path(logging_dir).resolve() if logging_dir else None)
        if a.path.resolve() != lora.resolve()]
    return registry.register_run(
        run_id, lora.resolve(), base_sha, ",".join(datasets) or "unregistered", hashes,
        artefacts, gov.owner, gov.purpose, gov.legal_basis,
        timedelta(days=gov.retention_days) if gov.retention_days is not None else None)
