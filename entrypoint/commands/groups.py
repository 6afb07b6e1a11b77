"""The sub-command groups the command modules add to, built once by `cli.build_app`.

Lives here, not in `cli.py`, so command modules never import the CLI that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import typer


@dataclass(frozen=True)
class CommandGroups:
    """The sub-command groups each command module may add to."""

    policy: typer.Typer
    keys: typer.Typer
    workspace: typer.Typer
    data: typer.Typer
    registry: typer.Typer
    audit: typer.Typer
    dev: typer.Typer
