"""`secure-trainer policy check`: gather every fact, evaluate the profile, print the decision.

Runs no training and changes nothing: no mount, no Vault login, no audit rule. Trainer
arguments (Kohya flags) after our options describe the run whose model and dataset are checked.
Exit codes: 0 allowed (warnings printed), 3 denied, 2 bad profile or arguments.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from entrypoint.errors import ConfigError

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups
    from entrypoint.policy.context import AuditModeName
    from secure_trainer.settings import TrainSettings

# coupling: the lifecycle's default training identity (entrypoint/run/privileges.py trainer_ids).
_DEFAULT_TRAINER_IDS = (10001, 10001)


def _trainer_ids() -> tuple[int, int]:
    try:
        from entrypoint.run.privileges import trainer_ids  # lazy: helper E's module
    except ImportError:
        return _DEFAULT_TRAINER_IDS
    uid, gid = trainer_ids()
    return int(uid), int(gid)


def _drop_ids(no_drop: bool, uid: int | None, gid: int | None) -> tuple[int, int] | None:
    """The privilege drop `run` would configure: to the trainer ids when started as root."""
    if no_drop:
        return None
    if uid is not None or gid is not None:
        default = _trainer_ids()
        return (uid if uid is not None else default[0], gid if gid is not None else default[1])
    return _trainer_ids() if os.geteuid() == 0 else None


def _train_settings(args: list[str], workspace: Path | None) -> TrainSettings | None:
    if not args:
        return None
    if workspace is not None and not any(a == "--output_dir" or a.startswith("--output_dir=")
                                         for a in args):
        # coupling: `run` (entrypoint/run/lifecycle.py) writes into runs/<id> of the workspace
        # when no --output_dir is given; judge the same place so both give one verdict.
        args = [*args, "--output_dir", str(workspace / "runs")]
    from secure_trainer.kohya.config import parse_train_args  # lazy: helper A's parser

    def _warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    return parse_train_args(list(args), warn=_warn)


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `policy check` to the policy group."""
    del root

    @groups.policy.command(
        "check",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        help="Evaluate a policy profile against this machine and the given trainer args. "
             "Exit 0 allowed, 3 denied, 2 bad profile.",
    )
    def check_cmd(
        ctx: typer.Context,
        policy: Annotated[str, typer.Option(
            "--policy", envvar="ST_POLICY",
            help="Profile name (strict, standard, dev) or a YAML file.")] = "strict",
        as_json: Annotated[bool, typer.Option(
            "--json", help="Print the decision record and the facts as JSON.")] = False,
        workspace: Annotated[Path | None, typer.Option(
            "--workspace", envvar="ST_MOUNTPOINT",
            help="Workspace mountpoint (plaintext view).")] = None,
        cipher_dir: Annotated[Path | None, typer.Option(
            "--cipher-dir", envvar="ST_CIPHER_DIR", help="gocryptfs cipher directory.")] = None,
        audit_mode: Annotated[str, typer.Option(
            "--audit-mode", envvar="ST_AUDIT_MODE", help="kernel, host or app.")] = "app",
        log_level: Annotated[str, typer.Option(
            "--log-level", envvar="ST_LOG_LEVEL", help="Log level the run would use.")] = "warning",
        canary: Annotated[str | None, typer.Option(
            "--canary", envvar="ST_POLICY_CANARY",
            help="IP:PORT that must stay unreachable (egress probe; IP literal only).")] = None,
        drop_uid: Annotated[int | None, typer.Option(
            "--drop-uid", help="uid the trainer drops to (default: the trainer user).")] = None,
        drop_gid: Annotated[int | None, typer.Option(
            "--drop-gid", help="gid the trainer drops to (default: the trainer group).")] = None,
        no_drop: Annotated[bool, typer.Option(
            "--no-privilege-drop", help="Evaluate a run that keeps the current user.")] = False,
    ) -> None:
        from entrypoint.policy import PolicyContext, check, load_profile, parse_canary
        from entrypoint.policy.decision import DeniedByPolicy
        from entrypoint.run.nodump import forbid_core_dumps

        # coupling: `run` does the same before its policy phase, so the core-limit fact agrees.
        forbid_core_dumps()

        if audit_mode not in ("kernel", "host", "app"):
            raise ConfigError("--audit-mode must be kernel, host or app")
        mode: AuditModeName = audit_mode  # type: ignore[assignment]
        profile = load_profile(policy)
        context = PolicyContext(
            profile=profile,
            train=_train_settings(list(ctx.args), workspace),
            workspace_dir=workspace,
            cipher_dir=cipher_dir,
            drop_ids=_drop_ids(no_drop, drop_uid, drop_gid),
            audit_mode=mode,
            log_level=log_level,
            canary=parse_canary(canary) if canary else None,
        )
        decision, facts = check(context)
        typer.echo(decision.to_json(facts.to_dict()) if as_json else decision.render())
        if decision.denied:
            raise DeniedByPolicy(decision)
