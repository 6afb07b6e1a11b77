"""Loss-threshold membership inference on text records, calibrated by the base model.

Score of a record = base loss − adapter loss (mean NLL over its response tokens): training
lowers the loss of members more than that of held-out records of the same distribution, and
subtracting the base loss removes how easy a record is anyway. AUC and TPR at low FPR with
bootstrap CIs come from privacy/mia_metrics.py. Returns figures only, never a record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secure_trainer.llm.batches import collate, per_example_loss
from secure_trainer.llm.data import read_jsonl
from secure_trainer.llm.template import Encoded, encode
from secure_trainer.privacy.mia_metrics import attack_metrics

SCORE_BATCH = 32
CUTOFF = 2048


@dataclass(frozen=True)
class TextMia:
    """The attack's figures (counts of the two sides included: the report stays inside the
    workspace)."""

    auc: float
    auc_low: float
    auc_high: float
    tpr_at_1pct_fpr: float
    members: int
    holdout: int


def encode_file(path: Path, tokenizer: Any, template: str) -> list[Encoded]:
    """Every record of a JSONL file with at least one response token. Raises DataRejected."""
    out = [encode(tokenizer, r.turns, template, CUTOFF) for r in read_jsonl(path)]
    return [e for e in out if e.trained_tokens]


def mean_losses(model: Any, examples: Sequence[Encoded], pad_id: int) -> list[float]:
    """Each example's mean response-token NLL (no gradients)."""
    import torch

    out: list[float] = []
    with torch.no_grad():
        for start in range(0, len(examples), SCORE_BATCH):
            out.extend(per_example_loss(model, collate(examples[start:start + SCORE_BATCH],
                                                       pad_id)).tolist())
    return out


def text_mia(base_members: Sequence[float], base_holdout: Sequence[float],
             members: Sequence[float], holdout: Sequence[float], *, rounds: int = 200,
             seed: int = 0) -> TextMia:
    """Calibrated scores (base − adapter) → AUC with CI and TPR at 1 % FPR."""
    m = [b - a for b, a in zip(base_members, members, strict=True)]
    h = [b - a for b, a in zip(base_holdout, holdout, strict=True)]
    metrics = attack_metrics(m, h, rounds=rounds, seed=seed)
    return TextMia(auc=metrics.auc.value, auc_low=metrics.auc.low, auc_high=metrics.auc.high,
                   tpr_at_1pct_fpr=metrics.tpr_at_1pct_fpr.value, members=len(m),
                   holdout=len(h))
