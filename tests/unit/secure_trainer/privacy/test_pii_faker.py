"""Precision and recall of the caption PII recognizers on a corpus Faker generated (seeded,
pinned Faker 40.63.0), not the recognizers' authors: floors per type, a little under the
figures in docs/data-and-registry.md, so a recognizer that breaks fails here."""

from __future__ import annotations

import pytest

from secure_trainer.privacy.pii import NATIONAL_ID_RULES, PiiScanner
from tests.unit.secure_trainer.privacy import pii_faker_corpus as pc

# type: (recall floor, precision floor); measured: docs/data-and-registry.md.
_FLOORS = {"IBAN": (0.99, 0.99), "CREDIT_CARD": (0.97, 0.97), "EMAIL": (0.98, 0.98),
           "IP": (0.98, 0.98), "NATIONAL_ID": (0.97, 0.97), "PHONE": (0.85, 0.95)}


@pytest.fixture(scope="module")
def default_scores() -> dict[str, pc.TypeScore]:
    scores, _ = pc.evaluate(pc.corpus(), PiiScanner())
    return scores


@pytest.mark.parametrize("kind", sorted(_FLOORS))
def test_recall_and_precision_per_type(kind: str, default_scores: dict[str, pc.TypeScore]) -> None:
    """Every identifier type the recognizers cover meets its floors on Faker's values."""
    score = default_scores[kind]
    recall_floor, precision_floor = _FLOORS[kind]
    assert score.positives >= 40
    assert score.recall >= recall_floor, (kind, score)
    assert score.precision >= precision_floor, (kind, score)


def test_negatives_are_mostly_clean(default_scores: dict[str, pc.TypeScore]) -> None:
    """Faker's sentences and look-alike tokens (EAN, ISBN, dates, VAT ids, routing numbers…)
    raise at most a handful of findings in total."""
    wrong = sum(s.findings - s.correct for s in default_scores.values())
    assert wrong <= 8, wrong


def test_opt_in_national_ids_with_every_rule() -> None:
    """The bare-digit national ids (off by default) are found once every rule is on, and the
    chance checksum passes stay few on this corpus."""
    cases = pc.corpus(pc.NATIONAL_DEFAULT + pc.NATIONAL_OPT_IN)
    scores, _ = pc.evaluate(cases, PiiScanner(national_ids=tuple(NATIONAL_ID_RULES)))
    assert scores["NATIONAL_ID"].positives == 20 * 15
    assert scores["NATIONAL_ID"].recall >= 0.97
    assert scores["NATIONAL_ID"].precision >= 0.95


def test_corpus_is_deterministic() -> None:
    """Same seed, same corpus: the figures in the docs are reproducible."""
    assert pc.corpus()[:50] == pc.corpus()[:50]
