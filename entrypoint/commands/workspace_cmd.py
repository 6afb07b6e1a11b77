"""`secure-trainer workspace open|close|status`: the gocryptfs workspace by hand.

The cipher dir and mountpoint come from `--cipher-dir`/`--mountpoint` or ST_CIPHER_DIR /
ST_MOUNTPOINT; `open` takes the passphrase from Vault (same env as `keys`, docs/vault-and-keys.md).
Must never: print a passphrase, or a path inside the workspace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from entrypoint.secret import Secret

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups

_CIPHER_HELP = "The gocryptfs cipher (encrypted) directory of the workspace."
_MOUNT_HELP = "Where the decrypted workspace is mounted (must be empty)."


def _vault_passphrase(cipher_dir: Path) -> Secret:
    """Log in to Vault from env and fetch the passphrase that opens the workspace."""
    # Lazy: Vault modules (hvac) load only for the command that needs them.
    from entrypoint.vault.client import VaultClient
    from entrypoint.vault.settings import VaultSettings
    from entrypoint.workspace.gocryptfs import Gocryptfs
    from entrypoint.workspace.keys import KeyManager

    with VaultClient.from_settings(VaultSettings.from_env(os.environ)) as vault:
        vault.login()
        return KeyManager(vault, Gocryptfs(), cipher_dir).open_passphrase()


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `workspace open`, `workspace close` and `workspace status`."""
    del root
    from entrypoint.workspace.gocryptfs import Gocryptfs, Workspace

    @groups.workspace.command("open")
    def open_cmd(
        cipher_dir: Path = typer.Option(..., "--cipher-dir", envvar="ST_CIPHER_DIR",
                                        help=_CIPHER_HELP),
        mountpoint: Path = typer.Option(..., "--mountpoint", envvar="ST_MOUNTPOINT",
                                        help=_MOUNT_HELP),
        owner: str = typer.Option("", "--owner",
                                  help="uid:gid that may write runs/ and tmp/ "
                                       "(default: root only)."),
        allow_other: bool = typer.Option(True, "--allow-other/--no-allow-other",
                                         help="Let other users (the training user) reach "
                                              "the mount."),
    ) -> None:
        """Mount the workspace with the key from Vault; create the layout on first open."""
        from entrypoint.errors import ConfigError

        owner_ids: tuple[int, int] | None = None
        if owner:
            try:
                uid, gid = (int(x) for x in owner.split(":", 1))
            except ValueError:
                raise ConfigError("--owner must be uid:gid (numbers)") from None
            owner_ids = (uid, gid)
        ws = Workspace(Gocryptfs(), cipher_dir, mountpoint)
        passphrase = _vault_passphrase(cipher_dir)
        try:
            ws.open(passphrase, allow_other=allow_other, owner=owner_ids)
        finally:
            passphrase.wipe()
        typer.echo("workspace open")

    @groups.workspace.command("close")
    def close_cmd(
        mountpoint: Path = typer.Option(..., "--mountpoint", envvar="ST_MOUNTPOINT",
                                        help=_MOUNT_HELP),
    ) -> None:
        """Unmount the workspace (a no-op when it is not mounted); exit 5 if it is busy."""
        Gocryptfs().unmount(mountpoint)
        typer.echo("workspace closed")

    @groups.workspace.command("status")
    def status_cmd(
        cipher_dir: Path = typer.Option(..., "--cipher-dir", envvar="ST_CIPHER_DIR",
                                        help=_CIPHER_HELP),
        mountpoint: Path = typer.Option(..., "--mountpoint", envvar="ST_MOUNTPOINT",
                                        help=_MOUNT_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Initialised / mounted / daemon pid / layout; needs no key."""
        st = Workspace(Gocryptfs(), cipher_dir, mountpoint).status()
        data = {"initialised": st.initialised, "mounted": st.mounted, "daemon_pid": st.daemon_pid,
                "layout_ok": st.layout_ok}
        if as_json:
            typer.echo(json.dumps(data))
        else:
            for key, value in data.items():
                typer.echo(f"{key}: {value}")
