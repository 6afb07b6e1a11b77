"""The canary audit's report: figures safe to print and to store next to the adapter.

Its own module so the audit (which builds it) and the plot (which draws it) do not import each
other. Never holds a secret, pseudonym, path or record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from secure_trainer.llm.exposure import CanaryExposure
from secure_trainer.llm.mia_text import TextMia

SCHEMA = "secure-trainer/canary-report/1"


@dataclass(frozen=True)
class CanaryReport:
    """The audit's figures (safe to print and to store next to the adapter)."""

    candidates: int
    space_bits: float
    max_exposure: float
    adapter: tuple[CanaryExposure, ...]
    base: tuple[CanaryExposure, ...]
    dp_epsilon: float | None
    mia: TextMia | None = None
    """The loss-threshold membership test, when members and holdout records were given."""
    schema: str = SCHEMA

    def to_json(self) -> str:
        """The report as JSON."""
        return json.dumps(asdict(self), indent=2) + "\n"

    def summary(self) -> str:
        """One line: mean exposure per repetition count (adapter vs base) and extractions."""
        parts = []
        for reps in sorted({c.repetitions for c in self.adapter}):
            mine = [c.exposure for c in self.adapter if c.repetitions == reps]
            base = [c.exposure for c in self.base if c.repetitions == reps]
            parts.append(f"×{reps} {sum(mine) / len(mine):.1f} (base "
                         f"{sum(base) / len(base):.1f})")
        extracted = sum(c.extracted for c in self.adapter)
        dp = f", dp ε={self.dp_epsilon:.3g}" if self.dp_epsilon is not None else ""
        mia = (f"; MIA AUC {self.mia.auc:.3f} [{self.mia.auc_low:.3f}, {self.mia.auc_high:.3f}]"
               if self.mia is not None else "")
        return (f"canary exposure bits (max {self.max_exposure:.1f}): " + ", ".join(parts)
                + f"; extracted {extracted}/{len(self.adapter)}{dp}{mia}")
