"""The `secure-trainer` command line: parsing and dispatch only, one error handler.

Each command group lives in `entrypoint/commands/<name>.py` with a `register(root, groups)`
function (the groups are defined in `entrypoint/commands/groups.py`, so no command module
imports this one); this module wires them and maps our typed errors to exit codes.
SECURITY: Typer's pretty exceptions are off (they print locals, which can hold secrets).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import click
import typer
import typer.exceptions as _texc
from typer._click import exceptions as _tclick  # Typer ≥0.29 vendors its own click

_CLICK_ERRORS = (click.ClickException, _tclick.ClickException)
_CLICK_ABORT = (click.exceptions.Abort, _texc.Abort)
_CLICK_EXIT = (click.exceptions.Exit, _texc.Exit)

from entrypoint.commands.groups import CommandGroups
from entrypoint.errors import Interrupted, SecureTrainerError
from secure_trainer import __version__


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, pretty_exceptions_enable=False,
                       add_completion=False)


def build_app() -> typer.Typer:
    """Build the Typer app with every command module registered."""
    app = typer.Typer(
        name="secure-trainer",
        help="Hardened, Kohya-compatible LoRA training: Vault keys, encrypted workspace, audit, wipe.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    groups = CommandGroups(
        policy=_group("Evaluate the security policy without running anything."),
        keys=_group("Workspace keys in Vault: init, status, rotate."),
        workspace=_group("Open, close and inspect the encrypted workspace."),
        data=_group("Import, sanitize and scan datasets."),
        registry=_group("The LoRA registry: lineage, subjects, erasure, expiry."),
        audit=_group("Verify the audit log; membership-inference audit of a LoRA."),
        dev=_group("Developer fixtures: tiny model, synthetic dataset, local Vault."),
    )

    @app.callback(invoke_without_command=True)
    def _root(
        version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    ) -> None:
        if version:
            typer.echo(f"secure-trainer {__version__}")
            raise typer.Exit(0)

    from entrypoint.commands import COMMAND_MODULES

    for module in COMMAND_MODULES:
        module.register(app, groups)
    for name, group in vars(groups).items():
        app.add_typer(group, name=name)
    return app


def _raise_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGINT into `Interrupted` so every teardown path runs."""
    signal.signal(signal.SIGTERM, _raise_on_signal)
    signal.signal(signal.SIGINT, _raise_on_signal)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) the contract's exit code."""
    args = sys.argv[1:] if argv is None else argv
    if argv is None:  # `python -m entrypoint.cli` (the console script did this in launch.py)
        from entrypoint.allocator import reexec_with_allocator

        reexec_with_allocator([a for a in args if a != "--debug"])
    install_signal_handlers()
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    code = 0
    try:
        rv = build_app()(args=args, prog_name="secure-trainer", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except SecureTrainerError as err:
        # SECURITY: the message is built by our code to be safe; no traceback by default.
        print(f"error[{err.kind}]: {err.message}", file=sys.stderr)
        if debug:
            import traceback

            traceback.print_exception(type(err), err, None)
        code = err.exit_code
    except _CLICK_ABORT:
        print("error[signal]: aborted", file=sys.stderr)
        code = 130
    except _CLICK_EXIT as ex:
        code = ex.exit_code
    except _tclick.NoArgsIsHelpError:
        code = 0  # help was shown for a bare group: not an error
    except _CLICK_ERRORS as ex:
        print(f"error[usage]: {ex.format_message()}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("error[signal]: interrupted", file=sys.stderr)
        code = 130
    except Exception as err:  # noqa: BLE001 - the last line of defence, see below
        # SECURITY: a foreign exception's text and traceback can carry data paths, captions or
        # URLs (an OSError names its file); print only its type unless --debug is given.
        print(f"error[internal]: unexpected {type(err).__name__} (a bug; rerun with --debug "
              "for a traceback)", file=sys.stderr)
        if debug:
            import traceback

            traceback.print_exception(err)
        code = 1
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
