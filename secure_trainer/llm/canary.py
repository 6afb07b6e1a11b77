"""Canaries for the memorization audit: random secrets planted at chosen repetition counts.

Canary i is "the account number of <pseudonym> is d-d-d-d-d-d" (6 random digits, drawn from
the OS CSPRNG) asked for by a user turn, planted REPETITIONS[i % 3] times as records of its own
subject `canary-i` (one privacy unit each, so user-level DP bounds all its copies together).
The sidecar `canaries.json` in the output folder lists them for `audit canary`; the secrets are
synthetic, never data. Never logs a secret.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from secure_trainer.errors import DataRejected
from secure_trainer.llm.data import TextRecord, Turn

REPETITIONS = (1, 4, 16)
DIGITS = 6
SIDECAR = "canaries.json"
SCHEMA = "secure-trainer/canaries/1"


@dataclass(frozen=True)
class Canary:
    """One planted secret and how often it was inserted."""

    pseudonym: str
    secret: str
    """The digits only, e.g. "739125"."""
    repetitions: int


def spoken(secret: str) -> str:
    """The digits as they appear in the text: "7-3-9-1-2-5"."""
    return "-".join(secret)


def question(canary: Canary) -> str:
    """The user turn that asks for the secret."""
    return f"what is the account number of {canary.pseudonym}?"


def answer_prefix(canary: Canary) -> str:
    """The assistant text before the secret (the extraction prompt ends here)."""
    return f"the account number of {canary.pseudonym} is "


def turns_for(canary: Canary, secret: str) -> tuple[Turn, ...]:
    """The conversation carrying `secret` (the canary's own or a candidate)."""
    return (Turn("user", question(canary)),
            Turn("assistant", answer_prefix(canary) + spoken(secret)))


def random_secret(rng: random.Random) -> str:
    """DIGITS uniform random digits."""
    return "".join(str(rng.randrange(10)) for _ in range(DIGITS))


def make_canaries(count: int, rng: random.Random | None = None) -> list[Canary]:
    """`count` canaries with fresh pseudonyms and secrets, repetitions cycling 1, 4, 16."""
    draw = rng or random.SystemRandom()
    return [Canary(pseudonym=f"client {draw.randrange(16 ** 4):04x}", secret=random_secret(draw),
                   repetitions=REPETITIONS[i % len(REPETITIONS)]) for i in range(count)]


def plant(records: list[TextRecord], canaries: list[Canary]) -> list[TextRecord]:
    """`records` followed by every canary's copies (subject `canary-<i>`)."""
    planted = list(records)
    for index, canary in enumerate(canaries):
        planted.extend(TextRecord(turns=turns_for(canary, canary.secret),
                                  subject=f"canary-{index}") for _ in range(canary.repetitions))
    return planted


def write_sidecar(out_dir: Path, canaries: list[Canary], template: str) -> Path:
    """Write `canaries.json` atomically; return its path. Raises OSError."""
    out_dir.mkdir(parents=True, exist_ok=True)
    body = {"schema": SCHEMA, "template": template, "digits": DIGITS,
            "canaries": [asdict(c) for c in canaries]}
    tmp = out_dir / f".{SIDECAR}.tmp"
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / SIDECAR)
    return out_dir / SIDECAR


def read_sidecar(adapter_dir: Path) -> tuple[list[Canary], str]:
    """(canaries, template) from an adapter folder. Raises DataRejected when absent or bad."""
    path = adapter_dir / SIDECAR
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("schema") != SCHEMA or raw.get("template") not in ("chat", "alpaca"):
            raise ValueError
        canaries = [Canary(**c) for c in raw["canaries"]]
        if not canaries or not all(c.secret.isdigit() for c in canaries):
            raise ValueError
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        raise DataRejected("the adapter folder has no valid canary list (train with "
                           "--canaries K)") from None
    return canaries, str(raw["template"])
