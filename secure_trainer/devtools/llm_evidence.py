"""The memorization evidence table: canary exposure and MIA AUC without DP, at ε = 8 and ε = 1.

`python -m secure_trainer.devtools.llm_evidence [WORKDIR]` builds the tiny Llama and a synthetic corpus
(plus a held-out corpus of the same templates), trains three adapters with the same canaries
(seeded, so the rows are comparable) and prints one Markdown table row per setting. Development
evidence on synthetic data only; writes only below WORKDIR (default: a temporary folder).
"""

from __future__ import annotations

import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from secure_trainer.devtools.synthetic_text import ALPACA_FILE, make_text_dataset
from secure_trainer.devtools.tiny_llm import make_tiny_llm
from secure_trainer.llm.canary_audit import run_canary_audit
from secure_trainer.llm.canary_report import CanaryReport
from secure_trainer.llm.config import build_config
from secure_trainer.llm.train import train_llm
from secure_trainer.train.progress import NullProgress

SETTINGS: tuple[tuple[str, dict[str, object]], ...] = (
    ("no DP", {}),
    ("ε = 8", {"dp": True, "target_epsilon": 8.0}),
    ("ε = 1", {"dp": True, "target_epsilon": 1.0}),
)


@dataclass(frozen=True)
class EvidenceSize:
    """How big the experiment is (the defaults take a few minutes on one CPU core)."""

    subjects: int = 40
    per_subject: int = 3
    steps: int = 80
    candidates: int = 200
    canaries: int = 6


def run(workdir: Path, size: EvidenceSize = EvidenceSize()) -> list[tuple[str, CanaryReport]]:
    """Train and audit every setting; return (label, report) pairs."""
    model = make_tiny_llm(workdir / "model").model_dir
    make_text_dataset(workdir / "train", subjects=size.subjects, per_subject=size.per_subject)
    make_text_dataset(workdir / "holdout", subjects=size.subjects,
                      per_subject=size.per_subject, seed=7)
    rows = []
    for index, (label, extra) in enumerate(SETTINGS):
        out = workdir / f"adapter-{index}"
        config = build_config({
            "model_name_or_path": str(model), "dataset": str(workdir / "train" / ALPACA_FILE),
            "output_dir": str(out), "canaries": size.canaries, "lora_rank": 8,
            "learning_rate": 1e-2, "max_steps": size.steps, "cutoff_len": 64,
            "per_device_train_batch_size": 8, "lr_scheduler_type": "constant", "seed": 0,
            "overwrite_output_dir": True, **extra})
        train_llm(config, progress=NullProgress(), warn=lambda _m: None,
                  canary_rng=random.Random(5))
        rows.append((label, run_canary_audit(
            out, model, candidates=size.candidates,
            members=workdir / "train" / ALPACA_FILE, holdout=workdir / "holdout" / ALPACA_FILE)))
    return rows


def table(rows: list[tuple[str, CanaryReport]]) -> str:
    """The Markdown table: mean exposure per repetition count, extractions, MIA AUC."""
    reps = sorted({c.repetitions for c in rows[0][1].adapter})
    head = ("| setting | ε | " + " | ".join(f"exposure ×{r} (bits)" for r in reps)
            + " | extracted | MIA AUC |")
    lines = [head, "|" + "---|" * (4 + len(reps))]
    for label, report in rows:
        cells = []
        for r in reps:
            values = [c.exposure for c in report.adapter if c.repetitions == r]
            cells.append(f"{sum(values) / len(values):.1f}")
        eps = f"{report.dp_epsilon:.2f}" if report.dp_epsilon is not None else "∞"
        auc = f"{report.mia.auc:.2f}" if report.mia is not None else "-"
        extracted = f"{sum(c.extracted for c in report.adapter)}/{len(report.adapter)}"
        lines.append(f"| {label} | {eps} | " + " | ".join(cells) + f" | {extracted} | {auc} |")
    top = rows[0][1]
    lines.append(f"\n(max measurable exposure {top.max_exposure:.1f} bits with "
                 f"{top.candidates} candidates)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Console entry: run in WORKDIR (or a temporary folder) and print the table."""
    from secure_trainer.logs import configure_quiet_logging, harden_env

    harden_env()
    configure_quiet_logging("WARNING")
    args = sys.argv[1:] if argv is None else argv
    if args:
        print(table(run(Path(args[0]))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        print(table(run(Path(tmp))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
