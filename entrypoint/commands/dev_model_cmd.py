"""`secure-trainer dev tiny-model OUT [--full-size]`: write the seeded random SD1.x development model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups


def register(root: typer.Typer, groups: "CommandGroups") -> None:
    """Add `dev tiny-model` to the dev group."""
    del root

    @groups.dev.command("tiny-model")
    def tiny_model(
        out: Path = typer.Argument(..., help="Folder to create (diffusers/ and a .safetensors file)."),
        full_size: bool = typer.Option(
            False, "--full-size",
            help="Real SD1.5 widths (~1B parameters, ~4 GB on disk in fp16) instead of tiny ones."),
    ) -> None:
        """Write a random-weight SD1.x model: a diffusers folder and an LDM single file."""
        from secure_trainer.devtools.tiny_model import make_tiny_model, summarize
        from secure_trainer.models.loading import quiet_hf

        out.mkdir(parents=True, exist_ok=True)
        with quiet_hf():
            paths = make_tiny_model(out, full_size=full_size)
        typer.echo(summarize(paths))
