"""Training facts: log level, `ss_*` metadata mode, DP-SGD and where model, dataset, outputs
and logs resolve.

Resolves paths (symlinks, `..`; relative ones against the cwd, which `run` sets to the
workspace) against the workspace mountpoint and keeps only the booleans — never a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from entrypoint.errors import ConfigError
from entrypoint.policy.context import PolicyContext
from entrypoint.policy.facts import TrainingFacts

__all__ = ["gather", "is_inside"]


def is_inside(path: Path, root: Path | None) -> bool:
    """True when `path` is `root` or below it, after resolving symlinks and `..`."""
    if root is None:
        return False
    target, base = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([target, base]) == base


def gather(ctx: PolicyContext) -> TrainingFacts:
    """Facts about what the run writes. Raises ConfigError without ctx.train."""
    from secure_trainer.settings import TrainSettings

    train = ctx.train
    # coupling: preflight gathers `training` only with settings; train-llm's are gatherers/text.py
    if not isinstance(train, TrainSettings):
        raise ConfigError("training facts need the trainer settings")
    eps = train.dp.target_epsilon
    return TrainingFacts(
        log_level=ctx.log_level.lower(),
        metadata_mode=train.metadata.value,
        dp_enabled=train.dp.enabled,
        dp_target_epsilon=float(eps) if eps is not None else None,
        output_in_workspace=is_inside(train.output_dir, ctx.workspace_dir),
        logging_in_workspace=(is_inside(train.logging_dir, ctx.workspace_dir)
                              if train.logging_dir is not None else None),
        model_in_workspace=is_inside(Path(train.pretrained_model_name_or_path),
                                     ctx.workspace_dir),
        dataset_in_workspace=all(is_inside(Path(sub.image_dir), ctx.workspace_dir)
                                 for ds in train.datasets for sub in ds.subsets),
    )
