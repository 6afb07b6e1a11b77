"""`secure-trainer dev dataset OUT`: write the synthetic Kohya dataset used by tests and demos.

Prints one summary line with counts only — never a file name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from secure_trainer.devtools.synthetic_dataset import make_dataset, summarize

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups

SDXL_SCALE = 8  # 64-160 px shapes become 512-1280 px


def dataset(
    out: Annotated[Path, typer.Argument(help="Folder to create; it becomes the --train_data_dir.")],
    sdxl: Annotated[bool, typer.Option(
        "--sdxl", help="SDXL-sized images (512-1280 px sides, for 1024 px buckets).")] = False,
    square: Annotated[int | None, typer.Option(
        "--square", min=8, max=4096, metavar="PX",
        help="Every image PX x PX (one bucket shape; for benchmarks).")] = None,
) -> None:
    """Write a small synthetic dataset (coloured shapes, `.txt` captions) into OUT."""
    from secure_trainer.errors import ConfigError

    try:
        train_data_dir = make_dataset(out, scale=SDXL_SCALE if sdxl else 1, square=square)
    except OSError:
        raise ConfigError("could not write the synthetic dataset (is OUT writable?)") from None
    summary = summarize(train_data_dir)
    typer.echo(
        f"synthetic dataset: {summary.subsets} subsets, {summary.images} images, "
        f"{summary.captions} captions (use --caption_extension .txt)"
    )


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `dev dataset` to the dev group."""
    del root
    groups.dev.command("dataset")(dataset)
