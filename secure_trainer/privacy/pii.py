"""Caption PII recognizers: find, redact or reject personal data in training captions.

Recognizers are regular expressions narrowed by validators (mod-97, Luhn, octet ranges,
SSN area rules, check letters) so that ordinary caption tokens — `1024x768`, years, versions,
hex colours, SKUs — do not match. Must never log or put caption text in an error message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

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
# IBAN lengths per country (ISO 13616 registry); unknown country codes are not IBANs.
_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}
_CARD_RE = re.compile(r"(?<![\w\-.])\d(?:[ \-]?\d){12,18}(?![\w\-]|\.\d)")
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
)
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


def _valid_ssn(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    # SSA rules: area 000, 666 and 900-999 are never issued; group 00 / serial 0000 neither.
    return (area not in ("000", "666") and not area.startswith("9")
            and group != "00" and serial != "0000")


def _valid_dni(text: str) -> bool:
    number, letter = int(text[:8]), text[8].upper()
    return "TRWAGMYFPDXBNJZSQVHLCKE"[number % 23] == letter


NATIONAL_ID_RULES: dict[str, NationalIdRule] = {
    "US_SSN": NationalIdRule(
        "US_SSN", re.compile(r"(?<![\w\-])\d{3}([ \-])\d{2}\1\d{4}(?![\w\-])"), _valid_ssn),
    "UK_NINO": NationalIdRule(
        "UK_NINO",
        re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
                   r" ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")),
    "ES_DNI": NationalIdRule("ES_DNI", re.compile(r"\b\d{8}[A-Z]\b"), _valid_dni),
}
DEFAULT_NATIONAL_IDS: tuple[str, ...] = tuple(NATIONAL_ID_RULES)


def _iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is None or len(compact) != expected:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _find_iban(text: str) -> Iterable[tuple[int, int]]:
    for m in _IBAN_RE.finditer(text):
        # The greedy match may run into a following word: retry shorter ends at group borders.
        ends = [m.end()] + [m.start() + i for i, ch in enumerate(m.group()) if ch == " "]
        for end in sorted(set(ends), reverse=True):
            if _iban_ok(text[m.start():end]):
                yield m.start(), end
                break


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


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
        return 16 <= n <= 19
    return False


def _find_cards(text: str) -> Iterable[tuple[int, int]]:
    for m in _CARD_RE.finditer(text):
        raw = m.group()
        if " " in raw and "-" in raw:
            continue  # mixed separators: a list of numbers, not a card
        digits = re.sub(r"\D", "", raw)
        if 13 <= len(digits) <= 19 and _card_brand_ok(digits) and _luhn_ok(digits):
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


def _find_phones(text: str) -> Iterable[tuple[int, int]]:
    spans = [m.span() for p in _PHONE_RES for m in p.finditer(text)]
    spans += [m.span(1) for m in _LABELLED_PHONE_RE.finditer(text)]
    for span in spans:
        digits = re.sub(r"\D", "", text[span[0]:span[1]])
        # E.164 numbers have at most 15 digits; fewer than 7 is an ordinary number.
        if 7 <= len(digits) <= 15:
            yield span


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
                 national_ids: Sequence[str] = DEFAULT_NATIONAL_IDS) -> None:
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
        add(PiiType.PHONE, _find_phones(text))
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
