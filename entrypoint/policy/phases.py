"""The lifecycle phases a policy is evaluated in, and which fact sections each one gathers.

Its own module so `profiles.py` (checks a rule's phase) and `context.py` (names the profile)
do not import each other.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["PHASES", "PHASE_SECTIONS", "Phase"]

Phase = Literal["pre-mount", "post-mount"]
PHASES: tuple[Phase, ...] = ("pre-mount", "post-mount")
# coupling: which fact sections each lifecycle phase gathers; a rule's facts must fit in one.
# `training` is post-mount: its facts come from the real trainer arguments, which `run` can only
# parse once the workspace (dataset config, relative paths) is visible.
PHASE_SECTIONS: dict[str, frozenset[str]] = {
    "pre-mount": frozenset({"process", "fs", "network", "gpu", "vault", "audit"}),
    "post-mount": frozenset({"fs", "model", "dataset", "training"}),
}
