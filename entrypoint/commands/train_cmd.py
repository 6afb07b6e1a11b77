"""`secure-trainer train [kohya flags...]`: the trainer alone, without the secure lifecycle.

Kohya's `train_network.py` flags (and `--config_file` / `--dataset_config`) pass through
untouched to `secure_trainer.kohya.config.parse_train_args`; our own flags are kebab-case:
`--log-level`, `--quiet`, `--progress-every`. `--help` prints the Kohya-flag help.
SECURITY: the environment is hardened (offline, no telemetry) before diffusers is imported;
output is numbers only (progress + one summary line), never a path, file name or caption.
Inside an open workspace (output dir below the mounted ST_MOUNTPOINT) the LoRA is registered
with its lineage (entrypoint/run/train_register.py); outside one, one line says it was not.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups

_OUR_HELP = """
secure-trainer options (kebab-case, ours):
  --log-level LEVEL     DEBUG, INFO, WARNING (default) or ERROR for our own log lines
  --quiet               no progress display (the final summary line is still printed)
  --progress-every N    plain-text progress: one line every N steps when not a TTY (default 10)
"""


def _help_text() -> str:
    from secure_trainer.kohya.config import build_parser

    return build_parser().format_help() + _OUR_HELP


def run_train(kohya_args: list[str], *, log_level: str, quiet: bool, progress_every: int) -> None:
    """Parse Kohya args, train, print the one-line summary to stdout.

    Raises ConfigError (2), DataRejected (8), TrainingError (7) from the trainer.
    """
    from secure_trainer.logs import configure_quiet_logging, harden_env

    harden_env()
    logger = configure_quiet_logging(log_level)
    from entrypoint.allocator import active_allocator

    logger.info("memory allocator: %s", active_allocator())  # tcmalloc or system (allocator.py)
    import os

    from entrypoint.run.train_register import (
        NOT_REGISTERED,
        RUN_CHILD_ENV,
        register_train,
        target_for,
    )
    from secure_trainer.kohya.config import parse_train_args
    from secure_trainer.train.loop import train
    from secure_trainer.train.progress import RunSummary, format_summary, make_progress

    settings = parse_train_args(kohya_args, warn=logger.warning)
    target = target_for(settings.output_dir, os.environ)  # checked before training
    progress = make_progress(sys.stderr, quiet=quiet, every=progress_every)
    result = train(settings, progress=progress, warn=logger.warning)
    if result.lora_path is None:  # non-main process of a multi-process launch
        return
    summary = RunSummary(steps=result.steps, epochs=result.epochs, final_loss=result.final_loss,
                         seconds_per_step=result.seconds_per_step,
                         wall_seconds=result.wall_seconds, peak_rss_bytes=result.peak_rss_bytes,
                         output_file=result.lora_path.name)
    print(format_summary(summary), flush=True)
    if target is not None:
        lora_id = register_train(target, settings, result.lora_path)
        # stderr: stdout stays the one summary line scripts parse.
        print(f"registry: registered LoRA {lora_id} with its lineage", file=sys.stderr,
              flush=True)
    elif os.environ.get(RUN_CHILD_ENV) != "1":  # under `run`, run registers at the seal
        print(NOT_REGISTERED, file=sys.stderr, flush=True)
    epsilon = result.extra.get("ss_dp_epsilon")
    if epsilon is not None:
        print(f"dp: ε={epsilon} (δ={result.extra.get('ss_dp_delta')}), recorded in the LoRA "
              "metadata", flush=True)


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `train` to the root app."""
    del groups

    @root.command(
        "train",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                          "help_option_names": []},
        add_help_option=False,
        help="Train a Kohya-compatible LoRA (train_network.py flags; --help lists them).",
    )
    def train_command(
        ctx: typer.Context,
        log_level: str = typer.Option("WARNING", "--log-level", help="Our log level."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
        progress_every: int = typer.Option(10, "--progress-every",
                                           help="Plain progress line every N steps."),
    ) -> None:
        args = list(ctx.args)
        if "--help" in args or "-h" in args:
            typer.echo(_help_text())
            return
        run_train(args, log_level=log_level, quiet=quiet, progress_every=progress_every)
