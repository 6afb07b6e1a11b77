"""`secure-trainer dev vault [--workdir DIR] [--tls] [--stop]`: a detached local OpenBao dev server.

Prints the `export` lines a run needs (addresses and file paths, never a token).
Must never: print or store the root token; stop a process it did not start (pid file is
checked against the process command line).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from entrypoint.errors import ConfigError
from entrypoint.vault.devserver import PID_FILE, DevVault

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups


def default_workdir() -> Path:
    """A tmpfs dir for the role_id/secret_id files: $XDG_RUNTIME_DIR, else /dev/shm."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    base = Path(runtime) if runtime else Path("/dev/shm")
    return base / f"secure-trainer-dev-vault-{os.getuid()}"


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `dev vault`."""
    del root

    @groups.dev.command("vault")
    def dev_vault_cmd(
        workdir: Path | None = typer.Option(None, "--workdir",
                                            help="Where the AppRole files and pid file go "
                                                 "(default: a tmpfs dir)."),
        tls: bool = typer.Option(False, "--tls", help="Serve https with a generated CA."),
        stop: bool = typer.Option(False, "--stop", help="Stop the server started there."),
    ) -> None:
        """Start (or --stop) a local OpenBao dev server configured for secure-trainer."""
        wd = workdir or default_workdir()
        if stop:
            if not DevVault.stop_pidfile(wd):
                raise ConfigError("no dev vault is recorded in that workdir (check --workdir)")
            typer.echo("dev vault stopped")
            return
        if (wd / PID_FILE).exists():
            raise ConfigError("a dev vault is already recorded in that workdir (stop it with "
                              "`secure-trainer dev vault --stop`)")
        vault = DevVault.start(wd, tls=tls, detached=True)
        typer.echo(f"# dev OpenBao (pid {vault.pid}); stop it with: secure-trainer dev vault "
                   f"--stop --workdir {shlex.quote(str(wd))}")
        for name, value in vault.env().items():
            typer.echo(f"export {name}={shlex.quote(value)}")
