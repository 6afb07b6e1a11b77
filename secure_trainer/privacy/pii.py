"""Caption PII recognizers: find, redact or reject personal data in training captions.

Recognizers are regular expressions (fast candidate finders) narrowed by maintained validators —
python-stdnum for IBANs (every country in its registry), card numbers (Luhn) and national ids,
phonenumbers for phone numbers, `ipaddress` for IPs — so that ordinary caption tokens
(`1024x768`, years, versions, hex colours, SKUs) do not match. Must never log or put caption text in an error message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from importlib import import_module
from typing import Any

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn as stdnum_luhn

from secure_trainer.errors import ConfigError

__all__ = [
    "NATIONAL_ID_RULES",
    "Finding",
    "NationalIdRule",
    "PiiMode",
    "PiiScanner",
    "PiiType",
    "redact_text",
    "scan_text",
]


class PiiType(str, Enum):
    """Kinds of personal data a caption may carry; the value is the label used in reports."""

    EMAIL = "EMAIL"
    PHONE = "PHONE"
    IBAN = "IBAN"
    CREDIT_CARD = "CREDIT_CARD"
    IP = "IP"
    NATIONAL_ID = "NATIONAL_ID"
    URL_CREDENTIALS = "URL_CREDENTIALS"
    DENYLIST = "DENYLIST"

    @property
    def placeholder(self) -> str:
        """The redaction token, e.g. `<EMAIL>`."""
        return f"<{self.value}>"


class PiiMode(str, Enum):
    """What the sanitizer does with a caption that has findings."""

    REPORT = "report"  # count only, caption unchanged
    REDACT = "redact"  # replace each finding with its placeholder
    REJECT = "reject"  # the caption's image is rejected


@dataclass(frozen=True)
class Finding:
    """One match: its type and the `[start, end)` character span in the scanned text."""

    type: PiiType
    span: tuple[int, int]


# Overlaps are resolved by this order (earlier wins), then by length: an e-mail inside a
# credentialed URL is reported as the URL, a deny-listed word inside an e-mail as the e-mail.
_PRIORITY: tuple[PiiType, ...] = (
    PiiType.URL_CREDENTIALS, PiiType.EMAIL, PiiType.IBAN, PiiType.CREDIT_CARD,
    PiiType.NATIONAL_ID, PiiType.IP, PiiType.PHONE, PiiType.DENYLIST,
)

_URL_CRED_RE = re.compile(
    r"\b[a-z][a-z0-9+.\-]{1,15}://[^\s/:@]+:[^\s/@]*@[^\s/?#,;]+[^\s,;]*", re.IGNORECASE)
_EMAIL_RE = re.compile(
    r"(?<![\w.+\-])[a-z0-9][a-z0-9._%+\-]{0,63}@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+"
    r"[a-z]{2,24}(?![\w\-])", re.IGNORECASE)
# Candidate IBAN: country code, check digits, then 11..30 alphanumerics in optional groups.
_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_CARD_RE = re.compile(r"(?<![\w\-.])\d(?:[ \-]?\d){11,18}(?![\w\-]|\.\d)")
_IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6_RE = re.compile(r"(?<![\w:.])[0-9a-f:]*:[0-9a-f:]*:[0-9a-f:.]*(?![\w:])", re.IGNORECASE)
_VERSION_CONTEXT_RE = re.compile(r"(?:\bv|\bver\.?|\bversion|\brelease|\bbuild)\s*$",
                                 re.IGNORECASE)
_PHONE_RES: tuple[re.Pattern[str], ...] = (
    # International: +CC then groups separated by space, dot or dash; optional (area).
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(\d{1,4}\))?(?:[ .\-]?\d{1,5}){2,6}(?![\w\-])"),
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567.
    re.compile(r"(?<![\w\-.])\(\d{3}\) ?\d{3}[ .\-]\d{4}(?![\w\-])"),
    re.compile(r"(?<![\w\-.])(?<!\d )\d{3}([.\-])\d{3}\1\d{4}(?![\w\-]|\.\d)"),
    # National trunk prefix 0: 020 7946 0958, 07700 900123, 030-12345678.
    # Area codes never start with 0, and a group right after another digit group is a list.
    re.compile(r"(?<![\w\-.])(?<!\d )0[1-9]\d{0,3}[ \-]\d{3,8}(?:[ \-]\d{3,4})?(?![\w\-]|\.\d)"),
    # International with 00 instead of +: 00420 603 766 201, 001-308-711-9508.
    re.compile(r"(?<![\w\-.])(?<!\d )00[1-9]\d{0,2}(?:[ .\-]?\d{1,5}){2,6}(?![\w\-]|\.\d)"),
    # A bracketed area or country code: (02480) 87467, (029) 2018 0824, (+30) 2538 440329.
    re.compile(r"(?<![\w\-.])(?<!\d )\(\+?\d{2,5}\)[ \-]?\d{2,8}(?:[ \-]?\d{2,4}){0,3}(?![\w\-]|\.\d)"),
    # Trunk 0 and 9-10 more digits in one run: 0145061207, 02534667335.
    re.compile(r"(?<![\w\-.])(?<!\d )0[1-9]\d{8,9}(?![\w\-]|\.\d)"),
)
# An extension after a number: x042, ext. 12 (part of the number's span when present).
_PHONE_EXT_RE = re.compile(r"(?: ?(?:x|ext\.?) ?\d{1,6})(?![\w\-])", re.IGNORECASE)
# A labelled number without other structure: "tel: 5551234567", "phone 555 123 4567".
_LABELLED_PHONE_RE = re.compile(
    r"\b(?:tel|phone|mobile|cell|fax|call|whatsapp)\b\.?:?\s*(\+?\d[\d \-.]{5,18}\d)(?![\w\-])",
    re.IGNORECASE)


@dataclass(frozen=True)
class NationalIdRule:
    """A national identifier recognizer: a pattern and an optional validator of the match."""

    name: str
    pattern: re.Pattern[str]
    validate: Callable[[str], bool] | None = None


def _stdnum(module: str) -> Callable[[str], bool]:
    """The `is_valid` of python-stdnum's `stdnum.<module>` (checksums, dates, ranges)."""
    mod: Any = import_module(f"stdnum.{module}")

    def validate(text: str) -> bool:
        return bool(mod.is_valid(text))

    return validate


def _ssn_ok(text: str) -> bool:
    # stdnum calls the few SSNs that were published in adverts invalid; they were issued to
    # real people, so a caption showing one still shows a person's number.
    published: Any = getattr(import_module("stdnum.us.ssn"), "_ssn_blacklist", frozenset())
    return _stdnum("us.ssn")(text) or text.replace(" ", "-") in published


def _rule(name: str, pattern: str, module: str | None, flags: int = 0) -> NationalIdRule:
    return NationalIdRule(name, re.compile(pattern, flags), _stdnum(module) if module else None)


_D = r"(?<![\w\-.+/])"  # a digit run that does not continue a longer token
_E = r"(?![\w\-/]|\.\d)"
# Candidate pattern per identifier (its printed shape), validated by python-stdnum. Identifiers
# that are bare digit runs of a common length (DE IdNr, PL PESEL, NL BSN, …) are in the table but
# not on by default: a random run of that length passes their checksum about one time in ten.
NATIONAL_ID_RULES: dict[str, NationalIdRule] = {r.name: r for r in (
    NationalIdRule("US_SSN", re.compile(_D + r"\d{3}([ \-])\d{2}\1\d{4}" + _E), _ssn_ok),
    _rule("US_EIN", _D + r"\d{2}-\d{7}" + _E, "us.ein"),
    _rule("UK_NINO", r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
          r" ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", None),
    _rule("AT_VNR", _D + r"\d{4} ?\d{6}" + _E, "at.vnr"),
    _rule("BE_NN", _D + r"\d{2}\.\d{2}\.\d{2}-\d{3}\.\d{2}" + _E, "be.nn"),
    _rule("BG_EGN", _D + r"\d{10}" + _E, "bg.egn"),
    _rule("CZ_RC", _D + r"\d{6}/\d{3,4}" + _E, "cz.rc"),
    _rule("DK_CPR", _D + r"\d{6}-\d{4}" + _E, "dk.cpr"),
    _rule("DE_IDNR", _D + r"\d{2} ?\d{3} ?\d{3} ?\d{3}" + _E, "de.idnr"),
    _rule("EE_IK", _D + r"[1-6]\d{10}" + _E, "ee.ik"),
    _rule("ES_DNI", r"\b\d{8}-?[A-Z]\b", "es.dni"),
    _rule("ES_NIE", r"\b[XYZ]-?\d{7}-?[A-Z]\b", "es.nie"),
    _rule("FI_HETU", r"\b\d{6}[-+ABCDEFYXWVU]\d{3}[0-9A-Y]\b", "fi.hetu"),
    _rule("FR_NIR", _D + r"[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}" + _E,
          "fr.nir"),
    _rule("GR_AMKA", _D + r"\d{11}" + _E, "gr.amka"),
    _rule("HR_OIB", _D + r"\d{11}" + _E, "hr.oib"),
    _rule("IE_PPS", r"\b\d{7}[A-W][A-IW]?\b", "ie.pps"),
    _rule("IT_CF", r"\b[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]\b", "it.codicefiscale"),
    _rule("LT_ASMENS", _D + r"[1-6]\d{10}" + _E, "lt.asmens"),
    _rule("LV_PK", _D + r"\d{6}-\d{5}" + _E, "lv.pvn"),
    _rule("NL_BSN", _D + r"\d{4}\.?\d{2}\.?\d{3}" + _E, "nl.bsn"),
    _rule("PL_PESEL", _D + r"\d{11}" + _E, "pl.pesel"),
    _rule("PT_CC", r"\b\d{8} ?\d ?[A-Z]{2}\d\b", "pt.cc"),
    _rule("RO_CNP", _D + r"[1-9]\d{12}" + _E, "ro.cnp"),
    _rule("SE_PNR", _D + r"(?:\d{2})?\d{6}[-+]\d{4}" + _E, "se.personnummer"),
    _rule("SI_EMSO", _D + r"\d{13}" + _E, "si.emso"),
    _rule("SK_RC", _D + r"\d{6}/\d{3,4}" + _E, "sk.rc"),
)}
# On by default: identifiers with separators, letters or a tight checksum in their shape.
DEFAULT_NATIONAL_IDS: tuple[str, ...] = (
    "US_SSN", "US_EIN", "UK_NINO", "BE_NN", "CZ_RC", "DK_CPR", "ES_DNI", "ES_NIE", "FI_HETU",
    "FR_NIR", "IE_PPS", "IT_CF", "LV_PK", "PT_CC", "SE_PNR", "SK_RC", "RO_CNP", "SI_EMSO",
)


def _iban_ok(candidate: str) -> bool:
    # stdnum: the country's registered BBAN format and length and mod-97, for every country of
    # the IBAN registry it ships. Not its per-country bank tables (check_country): a bank code
    # missing from a stale table would hide a real account number.
    return bool(stdnum_iban.is_valid(candidate.replace(" ", ""), check_country=False))


def _find_iban(text: str) -> Iterable[tuple[int, int]]:
    for m in _IBAN_RE.finditer(text):
        # The greedy match may run into a following word: retry shorter ends at group borders.
        ends = [m.end()] + [m.start() + i for i, ch in enumerate(m.group()) if ch == " "]
        for end in sorted(set(ends), reverse=True):
            if _iban_ok(text[m.start():end]):
                yield m.start(), end
                break


def _luhn_ok(digits: str) -> bool:
    return bool(stdnum_luhn.is_valid(digits))


def _card_brand_ok(digits: str) -> bool:
    # Issuer ranges with their lengths (Visa 4: 13/16/19, Mastercard 51-55 and 2221-2720: 16,
    # Amex 34/37: 15, Diners 36/38/300-305: 14-19, Discover/UnionPay 6: 16-19, JCB 35: 16-19):
    # a random digit run rarely passes both this and Luhn.
    n, two, four = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if two in (36, 38) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    if digits[0] == "6" or two == 35:
        return 12 <= n <= 19 if two in (63, 67) else 16 <= n <= 19  # Maestro 6304/67xx: 12+
    if four in (1800, 2131):
        return n == 15  # JCB's older 15-digit ranges
    if two == 50 or 56 <= two <= 58:
        return 12 <= n <= 19  # Maestro
    return False


def _find_cards(text: str) -> Iterable[tuple[int, int]]:
    for m in _CARD_RE.finditer(text):
        raw = m.group()
        if " " in raw and "-" in raw:
            continue  # mixed separators: a list of numbers, not a card
        digits = re.sub(r"\D", "", raw)
        if 12 <= len(digits) <= 19 and _card_brand_ok(digits) and _luhn_ok(digits):
            yield m.span()


def _find_ips(text: str) -> Iterable[tuple[int, int]]:
    for m in _IPV4_RE.finditer(text):
        if _VERSION_CONTEXT_RE.search(text[max(0, m.start() - 10):m.start()]):
            continue  # "version 1.2.3.4" is a version, not an address
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        yield m.span()
    for m in _IPV6_RE.finditer(text):
        cand = m.group()
        if sum(c in "0123456789abcdefABCDEF" for c in cand) < 3:
            continue  # "::" or "a::b" are too weak to call an address
        try:
            ipaddress.IPv6Address(cand)
        except ValueError:
            continue
        yield m.span()


@lru_cache(maxsize=4096)
def _phone_ok(candidate: str, region: str | None) -> bool:
    """phonenumbers: a possible number (length and prefix rules) — of the country its `+`
    code names, else of `region`, else of any region. Possible, not valid: the valid-range
    tables refuse unassigned and fictional ranges, and a privacy scan errs on recall."""
    digits = re.sub(r"\D", "", candidate)
    if not 7 <= len(digits) <= 15:  # E.164 has at most 15 digits; under 7 is a plain number
        return False
    intl = candidate.lstrip().startswith("+")
    regions = ([None] if intl else [region] if region else sorted(phonenumbers.SUPPORTED_REGIONS))
    for reg in regions:
        try:
            if phonenumbers.is_possible_number(phonenumbers.parse(candidate, reg)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


def _find_phones(text: str, region: str | None = None) -> Iterable[tuple[int, int]]:
    spans = [m.span() for p in _PHONE_RES for m in p.finditer(_PHONE_EXT_MASK.sub(_blank, text))]
    spans += [m.span(1) for m in _LABELLED_PHONE_RE.finditer(text)]
    for start, end in spans:
        if _phone_ok(text[start:end], region):
            ext = _PHONE_EXT_RE.match(text, end)
            yield start, ext.end() if ext else end


# Candidates are found with extensions blanked out (the patterns end at a word boundary that
# "x042" would break); the extension is added back to the span of a number found before it.
_PHONE_EXT_MASK = re.compile(r"(?<=\d)(?: ?(?:x|ext\.?) ?\d{1,6})(?![\w\-])", re.IGNORECASE)


def _blank(m: re.Match[str]) -> str:
    return " " * len(m.group())


def _find_national_ids(text: str, rules: Sequence[NationalIdRule]) -> Iterable[tuple[int, int]]:
    for rule in rules:
        for m in rule.pattern.finditer(text):
            if rule.validate is None or rule.validate(m.group()):
                yield m.span()


class PiiScanner:
    """A configured scanner: deny-list terms and the national-ID rules to apply.

    Raises ConfigError for a national-ID rule name not in `NATIONAL_ID_RULES`.
    """

    def __init__(self, *, deny_list: Iterable[str] = (),
                 national_ids: Sequence[str] = DEFAULT_NATIONAL_IDS,
                 region: str | None = None) -> None:
        """`region`: ISO 3166 code phone numbers without a `+` are read in (None: any)."""
        if region is not None and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError("unknown phone region (use an ISO 3166 code such as DE or US)")
        self._region = region.upper() if region else None
        terms = sorted({t.strip() for t in deny_list if t.strip()}, key=len, reverse=True)
        self._deny: re.Pattern[str] | None = None
        if terms:
            # Whole-word, case-insensitive; inner whitespace of a multi-word term is flexible.
            alts = "|".join(r"\s+".join(re.escape(w) for w in t.split()) for t in terms)
            self._deny = re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)
        unknown = [n for n in national_ids if n not in NATIONAL_ID_RULES]
        if unknown:
            raise ConfigError(f"unknown national-ID rule(s) {unknown}; known: "
                              f"{sorted(NATIONAL_ID_RULES)}")
        self._national = tuple(NATIONAL_ID_RULES[n] for n in national_ids)

    def scan(self, text: str) -> list[Finding]:
        """All non-overlapping findings in `text`, ordered by position."""
        candidates: list[Finding] = []

        def add(kind: PiiType, spans: Iterable[tuple[int, int]]) -> None:
            candidates.extend(Finding(kind, s) for s in spans)

        add(PiiType.URL_CREDENTIALS, (m.span() for m in _URL_CRED_RE.finditer(text)))
        add(PiiType.EMAIL, (m.span() for m in _EMAIL_RE.finditer(text)))
        add(PiiType.IBAN, _find_iban(text))
        add(PiiType.CREDIT_CARD, _find_cards(text))
        add(PiiType.NATIONAL_ID, _find_national_ids(text, self._national))
        add(PiiType.IP, _find_ips(text))
        add(PiiType.PHONE, _find_phones(text, self._region))
        if self._deny is not None:
            add(PiiType.DENYLIST, (m.span() for m in self._deny.finditer(text)))
        rank = {t: i for i, t in enumerate(_PRIORITY)}
        candidates.sort(key=lambda f: (rank[f.type], f.span[0] - f.span[1], f.span[0]))
        taken: list[Finding] = []
        for cand in candidates:
            if all(cand.span[1] <= t.span[0] or cand.span[0] >= t.span[1] for t in taken):
                taken.append(cand)
        return sorted(taken, key=lambda f: f.span)


@lru_cache(maxsize=16)
def _scanner(deny_list: tuple[str, ...]) -> PiiScanner:
    return PiiScanner(deny_list=deny_list)


def scan_text(text: str, *, deny_list: Iterable[str] = ()) -> list[Finding]:
    """Findings of every recognizer (default national-ID rules) in `text`, by position.

    Never raises for any input string; never logs.
    """
    return _scanner(tuple(deny_list)).scan(text)


def redact_text(text: str, findings: Sequence[Finding]) -> str:
    """`text` with each finding's span replaced by its placeholder (`<EMAIL>`, ...)."""
    out: list[str] = []
    pos = 0
    for f in sorted(findings, key=lambda f: f.span):
        out.append(text[pos:f.span[0]])
        out.append(f.type.placeholder)
        pos = f.span[1]
    out.append(text[pos:])
    return "".join(out)
