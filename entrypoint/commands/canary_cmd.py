"""`secure-trainer audit canary`: how much a train-llm adapter memorized its planted canaries.

Prints one summary line (mean exposure per repetition count, adapter vs base, how many
canaries greedy decoding extracts, and with --members/--holdout the calibrated loss-threshold
membership AUC), or the JSON report with --json; writes
`canary-report.json` and `canary-exposure.png` into --out (default: the adapter folder).
Never prints a secret, pseudonym or path; bad inputs end with one line (exit 2 or 8).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups


def canary(
    adapter: Annotated[Path, typer.Option("--adapter", help="The adapter folder trained with "
                                                            "--canaries K.")],
    base: Annotated[Path, typer.Option("--base", help="Its base model folder.")],
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default: the "
                                                           "adapter folder).")] = None,
    candidates: Annotated[int, typer.Option("--candidates", help="Random candidate secrets "
                                                                 "per canary.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the candidates.")] = 0,
    members: Annotated[Path | None, typer.Option(
        "--members", help="JSONL records the adapter was trained on (membership test).")
    ] = None,
    holdout: Annotated[Path | None, typer.Option(
        "--holdout", help="JSONL records of the same distribution it never saw.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Measure canary exposure (The Secret Sharer) and greedy extraction, adapter vs base."""
    from secure_trainer.logs import configure_quiet_logging, harden_env

    harden_env()
    configure_quiet_logging("WARNING")
    from secure_trainer.llm.canary_audit import run_canary_audit, write_report

    report = run_canary_audit(adapter, base, candidates=candidates, seed=seed, members=members,
                              holdout=holdout)
    write_report(report, out if out is not None else adapter)
    typer.echo(report.to_json() if as_json else report.summary(), nl=not as_json)


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `audit canary` to the audit group."""
    del root
    groups.audit.command("canary")(canary)
