"""`secure-trainer dev tiny-llm OUT` and `dev text-dataset OUT`: the text-side fixtures.

Print one summary line of counts each — never a file name or a record.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups


def tiny_llm(
    out: Annotated[Path, typer.Argument(help="Folder to create (a Hugging Face model folder).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights.")] = 0,
) -> None:
    """Write a random-weight Llama-architecture model with a locally trained tokenizer."""
    from secure_trainer.devtools.tiny_llm import make_tiny_llm, summarize
    from secure_trainer.errors import ConfigError
    from secure_trainer.logs import harden_env
    from secure_trainer.models.loading import quiet_hf

    harden_env()
    try:
        with quiet_hf():
            paths = make_tiny_llm(out, seed=seed)
    except OSError:
        raise ConfigError("could not write the tiny LLM (is OUT writable?)") from None
    typer.echo(summarize(paths))


def text_dataset(
    out: Annotated[Path, typer.Argument(help="Folder to create (alpaca.jsonl, chat.jsonl).")],
    subjects: Annotated[int, typer.Option("--subjects", help="Distinct subjects.")] = 8,
    per_subject: Annotated[int, typer.Option("--per-subject", help="Records per subject.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed.")] = 0,
) -> None:
    """Write a synthetic JSONL corpus (alpaca and chat formats) with subjects and planted PII."""
    from secure_trainer.devtools.synthetic_text import make_text_dataset
    from secure_trainer.errors import ConfigError

    if subjects < 1 or per_subject < 1:
        raise ConfigError("--subjects and --per-subject must be at least 1")
    try:
        summary = make_text_dataset(out, subjects=subjects, per_subject=per_subject, seed=seed)
    except OSError:
        raise ConfigError("could not write the text dataset (is OUT writable?)") from None
    typer.echo(f"text dataset: {summary.subjects} subjects, {summary.records} records, "
               f"{summary.with_pii} with planted PII, {summary.duplicates} duplicate "
               "(alpaca and chat formats)")


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `dev tiny-llm` and `dev text-dataset` to the dev group."""
    del root
    groups.dev.command("tiny-llm")(tiny_llm)
    groups.dev.command("text-dataset")(text_dataset)
