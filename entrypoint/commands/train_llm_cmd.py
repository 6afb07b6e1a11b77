"""`secure-trainer train-llm [CONFIG.yaml] [--key value ...]`: LoRA SFT of a local causal LM.

The YAML uses LLaMA-Factory's field names; `--key value` flags (same snake_case names) override
it; our own flags are kebab-case: `--log-level`, `--quiet`, `--progress-every`.
SECURITY: the environment is hardened (offline, no telemetry) before transformers is imported;
output is numbers only (progress + one summary line), never a path, record or subject.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups

_HELP = """usage: secure-trainer train-llm [CONFIG.yaml] [--key value ...]

Keys (YAML or flags; LLaMA-Factory names): model_name_or_path, dataset, dataset_dir,
output_dir, template (auto|chat|alpaca), cutoff_len, max_samples, finetuning_type (lora),
lora_rank, lora_alpha, lora_dropout, lora_target (all | a,b,c), learning_rate,
num_train_epochs, max_steps, per_device_train_batch_size, gradient_accumulation_steps,
lr_scheduler_type, warmup_ratio, warmup_steps, weight_decay, max_grad_norm, optim (adamw_torch),
bf16, gradient_checkpointing, seed, subject_field, save_steps, resume_from_checkpoint,
overwrite_output_dir. Speed/logging-only LLaMA-Factory keys (preprocessing_num_workers,
plot_loss, ...) are ignored with a warning; trust_remote_code is never honoured.
Differential privacy: dp, target_epsilon | noise_multiplier, delta, dp_unit (subject|record),
accountant (rdp|prv), max_grad_norm (the per-unit clip).
Memorization audit: canaries K (then `secure-trainer audit canary`).

secure-trainer options (kebab-case, ours):
  --log-level LEVEL     DEBUG, INFO, WARNING (default) or ERROR
  --quiet               no progress display (the summary line is still printed)
  --progress-every N    plain progress line every N steps when not a TTY (default 10)
"""


def split_args(args: list[str]) -> tuple[Path | None, list[str]]:
    """(config file, remaining --key value flags): the config is the one leading positional."""
    if args and not args[0].startswith("--"):
        return Path(args[0]), args[1:]
    return None, args


def run_train_llm(args: list[str], *, log_level: str, quiet: bool, progress_every: int) -> None:
    """Parse, train, print the summary line (and the ε line under DP) to stdout.

    Raises ConfigError (2), DataRejected (8), TrainingError (7).
    """
    from secure_trainer.logs import configure_quiet_logging, harden_env

    harden_env()
    logger = configure_quiet_logging(log_level)
    from entrypoint.allocator import active_allocator

    logger.info("memory allocator: %s", active_allocator())  # tcmalloc or system (allocator.py)
    from secure_trainer.llm.config import load_config
    from secure_trainer.llm.train import train_llm
    from secure_trainer.train.progress import RunSummary, format_summary, make_progress

    config_file, flags = split_args(args)
    config = load_config(config_file, flags, warn=logger.warning)
    progress = make_progress(sys.stderr, quiet=quiet, every=progress_every)
    result = train_llm(config, progress=progress, warn=logger.warning)
    if not result.is_main:  # a non-main process of `accelerate launch`
        return
    print(format_summary(RunSummary(
        steps=result.steps, epochs=result.epochs, final_loss=result.final_loss,
        seconds_per_step=result.seconds_per_step, wall_seconds=result.wall_seconds,
        peak_rss_bytes=result.peak_rss_bytes, output_file="adapter_model.safetensors")),
        flush=True)
    if result.epsilon is not None:
        stop = ", budget reached" if result.budget_exhausted else ""
        print(f"dp: ε={result.epsilon:.4g} (δ={result.delta:.3g}, unit {config.dp_unit}{stop}), "
              "recorded in the adapter metadata", flush=True)


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `train-llm` to the root app."""
    del groups

    @root.command(
        "train-llm",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                          "help_option_names": []},
        add_help_option=False,
        help="LoRA fine-tuning of a local causal LM (LLaMA-Factory keys; --help lists them).",
    )
    def train_llm_command(
        ctx: typer.Context,
        log_level: str = typer.Option("WARNING", "--log-level", help="Our log level."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
        progress_every: int = typer.Option(10, "--progress-every",
                                           help="Plain progress line every N steps."),
    ) -> None:
        args = list(ctx.args)
        if "--help" in args or "-h" in args:
            typer.echo(_HELP)
            return
        run_train_llm(args, log_level=log_level, quiet=quiet, progress_every=progress_every)
