"""The `secure-trainer` console script: the allocator re-exec before anything heavy is imported.

`entrypoint.cli` pulls in typer, click and every command's module (~0.5 s here); a trainer that
re-execs itself onto tcmalloc (entrypoint/allocator.py) would pay that twice, so this module
imports only the allocator check (its imports are stdlib and entrypoint.run.runtime) and then
hands over to `entrypoint.cli.main`.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Re-exec onto the trainer's allocator when it applies, then run the CLI."""
    from entrypoint.allocator import reexec_with_allocator

    reexec_with_allocator([a for a in sys.argv[1:] if a != "--debug"])
    from entrypoint.cli import main as cli_main

    cli_main()
