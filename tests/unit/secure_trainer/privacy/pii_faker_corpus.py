"""An independent PII corpus: Faker (pinned, seeded) writes the identifiers, not us.

Each positive is one generated value of a known type placed in a caption-like English
sentence (several templates), across the locales Faker has a generator for; negatives are
Faker's own sentences and look-alike tokens (EAN/ISBN codes, dates, prices, postcodes, UUIDs,
licence plates, versions, company VAT ids, US routing numbers, SWIFT codes, card CVCs and
expiry dates). Scoring per type: a positive is found when a finding of its type overlaps its
span (recall); a finding is correct when it overlaps a positive of its type (precision).
Used by test_pii_faker.py; the figures are in docs/data-and-registry.md.
Must never write a file or reach the network (Faker generates locally).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from faker import Faker

from secure_trainer.privacy.pii import PiiScanner

SEED = 20261205
PER_GENERATOR = 40

# (expected type, locale, generator, spaced): `spaced` groups the digits by four as printed.
_Gen = tuple[str, str, Callable[[Faker], str]]
IBAN_LOCALES = ("de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "fi_FI", "cs_CZ", "sk_SK",
                "ro_RO", "pt_PT", "de_AT", "nl_BE", "el_GR", "en_IE", "en_GB", "da_DK")
PHONE_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "sv_SE",
                 "pt_PT", "cs_CZ", "ro_RO", "da_DK", "fi_FI", "el_GR", "ja_JP", "pt_BR", "en_IN")
# Default-on national-id rules and the Faker generator that writes that identifier.
NATIONAL_DEFAULT: tuple[_Gen, ...] = (
    ("US_SSN", "en_US", lambda f: f.ssn()),
    ("ES_DNI", "es_ES", lambda f: f.nif()),
    ("ES_NIE", "es_ES", lambda f: f.nie()),
    ("FR_NIR", "fr_FR", lambda f: f.ssn()),
    ("IT_CF", "it_IT", lambda f: f.ssn()),
    ("FI_HETU", "fi_FI", lambda f: f.ssn()),
    ("SE_PNR", "sv_SE", lambda f: f.ssn()),
    ("RO_CNP", "ro_RO", lambda f: f.ssn()),
    ("LV_PK", "lv_LV", lambda f: f.ssn()),
)
# Bare digit runs: rules that are off by default (too many chance checksum passes).
NATIONAL_OPT_IN: tuple[_Gen, ...] = (
    ("NL_BSN", "nl_NL", lambda f: f.ssn()),
    ("PL_PESEL", "pl_PL", lambda f: f.ssn()),
    ("EE_IK", "et_EE", lambda f: f.ssn()),
    ("AT_VNR", "de_AT", lambda f: f.ssn()),
    ("GR_AMKA", "el_GR", lambda f: f.ssn()),
    ("HR_OIB", "hr_HR", lambda f: f.ssn()),
)
CARD_TYPES = ("visa16", "visa13", "visa19", "mastercard", "amex", "discover", "jcb15", "jcb16",
              "diners", "maestro")

_TEMPLATES = {
    "IBAN": ("refund to {v} for the studio shoot", "portrait of a donor, account {v}",
             "bank details: {v}"),
    "CREDIT_CARD": ("paid with card {v} at the gallery", "a receipt showing {v}",
                    "card number {v} on the table"),
    "NATIONAL_ID": ("patient record {v}, left knee x-ray", "id {v} printed on the badge",
                    "a scanned form with the number {v}"),
    "PHONE": ("call {v} to book the photographer", "a shop sign with {v} in red letters",
              "contact: {v}"),
    "EMAIL": ("sent by {v} after the wedding", "a poster listing {v}", "reach me at {v}"),
    "IP": ("screenshot of a router at {v}", "server {v} in the rack", "log line from {v}"),
    "NAME": ("{v} smiling at the camera", "a portrait of {v} in the park",
             "{v} holding a cup of coffee"),
}
_NEGATIVE_TOKENS: tuple[Callable[[Faker], str], ...] = (
    lambda f: f.ean13(), lambda f: f.ean8(), lambda f: f.isbn13(), lambda f: f.isbn10(),
    lambda f: f.date(), lambda f: f.year(), lambda f: f.time(), lambda f: f.hex_color(),
    lambda f: f.pricetag(), lambda f: f.postcode(), lambda f: f.license_plate(),
    lambda f: f.uuid4(), lambda f: str(f.random_int(0, 10 ** 6)),
    lambda f: f.numerify("####x####"), lambda f: f.numerify("v#.#.##"),
    lambda f: f.file_name(), lambda f: f.credit_card_security_code(),
    lambda f: f.credit_card_expire(), lambda f: f.swift(), lambda f: f.aba(),
    lambda f: f.vat_id(), lambda f: f.building_number(), lambda f: f.numerify("###-####"),
    lambda f: f.numerify("## ## ## ##"), lambda f: f.numerify("#### #### ####"),
)
_NEGATIVE_LOCALES = ("en_US", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "en_GB")


@dataclass(frozen=True)
class Case:
    """A caption and the span and type of the one value placed in it (type None: negative)."""

    text: str
    kind: str | None
    span: tuple[int, int]
    rule: str = ""


def _fakers() -> dict[str, Faker]:
    out = {}
    for i, loc in enumerate(sorted({*IBAN_LOCALES, *PHONE_LOCALES, *_NEGATIVE_LOCALES,
                                    *(g[1] for g in NATIONAL_DEFAULT + NATIONAL_OPT_IN)})):
        fake = Faker(loc)
        fake.seed_instance(SEED + i)
        out[loc] = fake
    return out


def _place(rng: random.Random, kind: str, value: str, rule: str = "") -> Case:
    template = rng.choice(_TEMPLATES[kind])
    start = template.index("{v}")
    return Case(template.replace("{v}", value), kind, (start, start + len(value)), rule)


def _grouped(value: str) -> str:
    return " ".join(value[i:i + 4] for i in range(0, len(value), 4))


def corpus(national: tuple[_Gen, ...] = NATIONAL_DEFAULT) -> list[Case]:
    """The positives of every type and the negatives, deterministic for the pinned Faker."""
    fakers = _fakers()
    rng = random.Random(SEED)
    cases: list[Case] = []
    for loc in IBAN_LOCALES:
        for i in range(PER_GENERATOR // 4):
            value = fakers[loc].iban()
            cases.append(_place(rng, "IBAN", _grouped(value) if i % 2 else value))
    for card in CARD_TYPES:
        for i in range(PER_GENERATOR // 2):
            value = fakers["en_US"].credit_card_number(card_type=card)
            cases.append(_place(rng, "CREDIT_CARD", _grouped(value) if i % 2 else value, card))
    for rule, loc, gen in national:
        for _ in range(PER_GENERATOR // 2):
            cases.append(_place(rng, "NATIONAL_ID", gen(fakers[loc]), rule))
    for loc in PHONE_LOCALES:
        for _ in range(PER_GENERATOR // 4):
            cases.append(_place(rng, "PHONE", fakers[loc].phone_number(), loc))
    en = fakers["en_US"]
    for gen in (en.email, en.free_email, en.company_email, fakers["de_DE"].email):
        cases += [_place(rng, "EMAIL", gen()) for _ in range(PER_GENERATOR // 4)]
    for gen in (en.ipv4_public, en.ipv6):
        cases += [_place(rng, "IP", gen()) for _ in range(PER_GENERATOR // 2)]
    for loc in ("en_US", "de_DE", "fr_FR", "es_ES", "it_IT", "pl_PL"):
        cases += [_place(rng, "NAME", fakers[loc].name()) for _ in range(PER_GENERATOR // 4)]
    for loc in _NEGATIVE_LOCALES:
        fake = fakers[loc]
        for _ in range(PER_GENERATOR):
            cases.append(Case(fake.sentence(nb_words=10), None, (0, 0)))
        for make in _NEGATIVE_TOKENS:
            for _ in range(2):
                try:
                    token = make(fake)
                except AttributeError:
                    break  # a generator this locale lacks (vat_id in en_US)
                cases.append(Case(f"{fake.sentence(nb_words=5)[:-1]} {token}.", None, (0, 0)))
    return cases


@dataclass
class TypeScore:
    """Counts of one PII type over the corpus."""

    positives: int = 0
    found: int = 0
    findings: int = 0
    correct: int = 0

    @property
    def recall(self) -> float:
        """Found / positives."""
        return self.found / self.positives if self.positives else 1.0

    @property
    def precision(self) -> float:
        """Correct findings / findings."""
        return self.correct / self.findings if self.findings else 1.0


def evaluate(cases: list[Case], scanner: PiiScanner) -> tuple[dict[str, TypeScore], Counter[str]]:
    """Per-type scores, and the misses by rule/locale/card type (for the docs)."""
    scores: dict[str, TypeScore] = {}
    misses: Counter[str] = Counter()
    for case in cases:
        findings = scanner.scan(case.text)
        if case.kind is not None:
            score = scores.setdefault(case.kind, TypeScore())
            score.positives += 1
            hit = any(f.type.value == case.kind and f.span[0] < case.span[1]
                      and case.span[0] < f.span[1] for f in findings)
            score.found += hit
            if not hit:
                misses[f"{case.kind}:{case.rule}"] += 1
        for f in findings:
            score = scores.setdefault(f.type.value, TypeScore())
            score.findings += 1
            score.correct += (case.kind == f.type.value and f.span[0] < case.span[1]
                              and case.span[0] < f.span[1])
    return scores, misses
