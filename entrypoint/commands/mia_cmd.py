"""`secure-trainer audit mia`: membership-inference audit of a trained LoRA.

Prints one summary line (AUC with its CI, TPR at 1 % FPR), or the JSON report with --json;
writes `<lora stem>.mia.json` and `<lora stem>.mia-roc.png` into --out (default: the LoRA's
folder — inside the workspace when the LoRA is). Must never print a path, file name or caption;
bad inputs end with one line and exit 2 (options) or 8 (files / images rejected).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from entrypoint.commands.groups import CommandGroups


def mia(
    lora: Annotated[Path, typer.Option("--lora", help="The LoRA (.safetensors) to audit.")],
    base: Annotated[Path, typer.Option("--base", help="Its base model (diffusers folder or "
                                                      ".safetensors).")],
    members: Annotated[Path, typer.Option("--members", help="Images the LoRA was trained on.")],
    holdout: Annotated[Path, typer.Option("--holdout", help="Images from the same distribution "
                                                            "it never saw.")],
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default: the "
                                                           "LoRA's folder).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
    resolution: Annotated[int | None, typer.Option("--resolution", help="Square px (default: "
                                                   "the LoRA's training resolution).")] = None,
    caption_extension: Annotated[str, typer.Option("--caption-extension",
                                                   help="As in training.")] = ".caption",
    timesteps: Annotated[int, typer.Option("--timesteps", help="Timestep grid size.")] = 10,
    noises: Annotated[int, typer.Option("--noises", help="Noises per timestep.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fixed noises.")] = 0,
    rounds: Annotated[int, typer.Option("--bootstrap", help="Bootstrap rounds.")] = 1000,
) -> None:
    """Run the calibrated loss-threshold attack: LoRA vs base, members vs holdout."""
    from secure_trainer.logs import configure_quiet_logging, harden_env

    harden_env()
    configure_quiet_logging("WARNING")
    from secure_trainer.privacy.mia import MiaSettings, run_audit, write_report

    settings = MiaSettings(lora=lora, base=base, members=members, holdout=holdout,
                           resolution=resolution, caption_extension=caption_extension,
                           timesteps=timesteps, noises=noises, seed=seed, bootstrap=rounds)
    report = run_audit(settings)
    write_report(report, out if out is not None else lora.parent, lora.stem)
    typer.echo(report.to_json() if as_json else report.summary(), nl=not as_json)


def register(root: typer.Typer, groups: CommandGroups) -> None:
    """Add `audit mia` to the audit group."""
    del root
    groups.audit.command("mia")(mia)
