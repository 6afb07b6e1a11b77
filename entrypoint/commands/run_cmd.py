"""`secure-trainer run`: the full secure lifecycle around `secure-trainer train`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `run`."""
    del groups

    @root.command("run", context_settings={"allow_extra_args": True,
                                           "ignore_unknown_options": True})
    def run_cmd(
        ctx: typer.Context,
        policy: str = typer.Option(os.environ.get("ST_POLICY", "strict"), "--policy",
                                   help="Policy profile name or YAML file (env ST_POLICY)."),
        trainer: str = typer.Option("kohya", "--trainer",
                                    help="kohya (image LoRA, Kohya flags) or llm (train-llm: "
                                         "CONFIG.yaml, then --key value flags)."),
    ) -> None:
        """Policy → Vault → key → mount → audit → train unprivileged → seal → unmount → wipe.

        Trainer flags follow (Kohya names); relative paths resolve inside the workspace.
        With --trainer llm: CONFIG.yaml (read from here) and train-llm's --key value flags;
        the adapter goes to runs/<run-id>/ of the workspace.
        Needs ST_CIPHER_DIR, ST_MOUNTPOINT and the Vault env (see README); ST_AUDIT_MODE
        (kernel|host|app, default app) picks who owns the kernel audit rules.
        """
        from entrypoint.audit.auditctl import Auditctl
        from entrypoint.run.access import SUPERVISOR_UMASK
        from entrypoint.run.lifecycle import Lifecycle, RunSettings
        from entrypoint.run.nodump import forbid_core_dumps
        from entrypoint.vault.client import VaultClient
        from entrypoint.vault.settings import VaultSettings
        from entrypoint.workspace.gocryptfs import Gocryptfs

        # SECURITY: everything the supervisor creates (registry, manifests, run dirs, logs) is
        # owner-only unless a mode is asked for; the training child inherits it.
        os.umask(SUPERVISOR_UMASK)
        forbid_core_dumps()  # no core file may hold the token, the passphrase or an image
        env = dict(os.environ)
        vault_settings = VaultSettings.from_env(env)
        # The kernel audit rules watch every Vault credential file this run reads.
        creds = (vault_settings.token_file, vault_settings.role_id_file,
                 vault_settings.secret_id_file, vault_settings.jwt_file)
        settings = RunSettings.from_env(env, policy=policy, train_args=list(ctx.args),
                                        vault_files=tuple(p for p in creds if p is not None),
                                        trainer=trainer)
        vault = VaultClient.from_settings(vault_settings)
        life = Lifecycle(settings, vault=vault, gocryptfs=Gocryptfs(), auditctl=Auditctl(),
                         echo=typer.echo)
        lora = life.execute()
        rel = lora.relative_to(settings.mountpoint)
        if settings.trainer == "llm":
            typer.echo(f"done: run {life.run_id}; adapter sealed inside the encrypted workspace "
                       f"at <workspace>/{rel.parent} (open it with `secure-trainer workspace "
                       "open`)")
            return
        typer.echo(f"done: run {life.run_id}; LoRA sealed inside the encrypted workspace at "
                   f"<workspace>/{rel} (open it with `secure-trainer workspace open`)")
