"""`secure-trainer wipe [--dry-run] [--path P ...]`: wipe temp files and caches, print counts.

Without --path the targets are `entrypoint.run.wipe.default_targets()` (the host's /tmp only inside a
container). Must never: print a file name or path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add the top-level `wipe` command."""
    del groups

    @root.command("wipe")
    def wipe_cmd(
        dry_run: bool = typer.Option(False, "--dry-run",
                                     help="Count what would go; delete nothing."),
        paths: list[Path] = typer.Option([], "--path",
                                         help="Wipe this dir's contents (or this file) instead of "
                                              "the defaults; repeatable."),
    ) -> None:
        """Overwrite-then-unlink temp files and caches; exit 5 if anything could not be removed."""
        from entrypoint.errors import WorkspaceError
        from entrypoint.run.wipe import default_targets, wipe

        targets = list(paths) if paths else default_targets()
        report = wipe(targets, dry_run=dry_run)
        verb = "would wipe" if dry_run else "wiped"
        typer.echo(f"{verb} {report.files} files, {report.dirs} dirs, {report.bytes} bytes "
                   f"({report.overwritten} overwritten, {report.skipped_mounts} other "
                   f"filesystems left alone, {report.failed} failed)")
        if report.failed:
            raise WorkspaceError(f"{report.failed} entries could not be wiped (busy or not "
                                 "permitted); run `secure-trainer wipe` again as root")
