"""Placeholder: registers nothing until its owner implements it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from entrypoint.cli import CommandGroups


def register(root: typer.Typer, groups: "CommandGroups") -> None:
    """Add this module's commands to the app."""
    del root, groups
