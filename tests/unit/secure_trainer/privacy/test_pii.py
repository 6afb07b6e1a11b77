"""Caption PII recognizers: precision/recall on the labelled corpus, redaction, validators."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from secure_trainer.errors import ConfigError
from secure_trainer.privacy.pii import PiiScanner, PiiType, redact_text, scan_text
from tests.conftest import REPO_ROOT

CORPUS = REPO_ROOT / "tests" / "data" / "pii_corpus.jsonl"
DENY_LIST = ("Project Nightjar", "Acme Dynamics", "Kestrel")
# coupling: docs/data-and-registry.md states these thresholds and the measured numbers.
MIN_OVERALL_PRECISION = 0.95
MIN_OVERALL_RECALL = 0.95
MIN_PER_TYPE = 0.90


def _load() -> list[dict[str, object]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line]


def test_corpus_shape() -> None:
    """≥100 captions, at least half clean, every PII type labelled at least 5 times."""
    rows = _load()
    assert len(rows) >= 100
    assert sum(1 for r in rows if not r["labels"]) >= len(rows) / 2
    counts = Counter(label for r in rows for label in r["labels"])  # type: ignore[attr-defined]
    assert set(counts) == {t.value for t in PiiType}
    assert min(counts.values()) >= 5


def test_precision_recall_per_type_and_overall() -> None:
    """Caption-level (caption, type) precision and recall meet the stated thresholds."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for row in _load():
        text = str(row["text"])
        predicted = {f.type.value for f in scan_text(text, deny_list=DENY_LIST)}
        labelled = set(row["labels"])  # type: ignore[arg-type]
        tp.update(predicted & labelled)
        fp.update(predicted - labelled)
        fn.update(labelled - predicted)
    for kind in PiiType:
        k = kind.value
        precision = tp[k] / max(1, tp[k] + fp[k])
        recall = tp[k] / max(1, tp[k] + fn[k])
        assert precision >= MIN_PER_TYPE, (k, precision)
        assert recall >= MIN_PER_TYPE, (k, recall)
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    assert total_tp / (total_tp + total_fp) >= MIN_OVERALL_PRECISION
    assert total_tp / (total_tp + total_fn) >= MIN_OVERALL_RECALL


def test_redaction_replaces_values_with_placeholders() -> None:
    """Redacted text keeps the caption's tags and holds no PII value any more."""
    text = "1girl, mail a.b@example.com, card 4111-1111-1111-1111, Acme Dynamics, 1024x768"
    out = redact_text(text, scan_text(text, deny_list=["acme dynamics"]))
    assert out == "1girl, mail <EMAIL>, card <CREDIT_CARD>, <DENYLIST>, 1024x768"
    assert scan_text(out, deny_list=["acme dynamics"]) == []


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112",  # Luhn fails
    "DE89 3704 0044 0532 0130 01",  # mod-97 fails
    "666-45-6789", "900-12-3456", "123-00-4567",  # SSN area/group rules
    "256.1.1.1", "1.2.3", "12345678A",  # bad octet, too few octets, DNI check letter
    "https://example.com/user@host", "1024x768 2023 v10.0.0.1",
])
def test_validators_reject_lookalikes(text: str) -> None:
    """Strings shaped like PII but failing the validator are not reported."""
    assert scan_text(text) == []


def test_overlap_reports_outer_type_once() -> None:
    """An IP inside a credentialed URL is one URL_CREDENTIALS finding."""
    text = "mysql://u:p@10.0.0.1:3306/db"
    assert [f.type for f in scan_text(text)] == [PiiType.URL_CREDENTIALS]


def test_deny_list_whole_word_case_insensitive() -> None:
    """Deny-list terms match as whole words in any case, not inside other words."""
    scanner = PiiScanner(deny_list=["Falcon"])
    assert [f.span for f in scanner.scan("the FALCON ship")] == [(4, 10)]
    assert scanner.scan("falconry club") == []


def test_unknown_national_id_rule_is_config_error() -> None:
    """Asking for a national-ID rule we do not have is a ConfigError."""
    with pytest.raises(ConfigError):
        PiiScanner(national_ids=["XX_NOPE"])
