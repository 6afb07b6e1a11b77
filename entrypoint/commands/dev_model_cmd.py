"""`secure-trainer dev tiny-model OUT [--sdxl] [--full-size]`: write a seeded random SD1.x/SDXL model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups


def tiny_model(
    out: Annotated[Path, typer.Argument(
        help="Folder to create (diffusers/ and a .safetensors file).")],
    full_size: Annotated[bool, typer.Option(
        "--full-size", help="Real widths (SD1.5: ~1B parameters, ~2 GB in fp16; SDXL: ~3.5B, "
                            "~7 GB) instead of tiny ones.")] = False,
    sdxl: Annotated[bool, typer.Option(
        "--sdxl", help="SDXL (two text encoders, SGM single file) instead of SD1.5.")] = False,
) -> None:
    """Write a random-weight model: a diffusers folder and an LDM single file."""
    from secure_trainer.devtools.tiny_model import make_tiny_model, summarize
    from secure_trainer.devtools.tiny_sdxl import make_tiny_sdxl
    from secure_trainer.models.loading import quiet_hf

    out.mkdir(parents=True, exist_ok=True)
    with quiet_hf():
        make = make_tiny_sdxl if sdxl else make_tiny_model
        paths = make(out, full_size=full_size)
    typer.echo(summarize(paths))


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `dev tiny-model` to the dev group."""
    del root
    groups.dev.command("tiny-model")(tiny_model)
