"""The Annex E table is the 2024b Table E.1-1: counts per standard code and a sample of rows
pinned, so a shortened or mistyped table fails here rather than keeping data silently."""

from __future__ import annotations

from collections import Counter

import pytest
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

from secure_trainer.privacy.dicom.deid import DeidOptions, deidentify
from secure_trainer.privacy.dicom.profile import ACTIONS, PROFILE, STANDARD_CODES

# Rows of Table E.1-1 (PS3.15 2024b, Basic Profile column) counted per code.
_COUNTS = {"D": 92, "Z": 42, "X": 380, "U": 53, "Z/D": 6, "X/Z": 11, "X/D": 22, "X/Z/D": 8,
           "X/Z/U*": 2}
# (tag, standard code) rows read off the standard, across groups and codes.
_SAMPLE = [
    (0x00100010, "Z"),  # Patient's Name
    (0x00100020, "Z/D"),  # Patient ID (Z until 2023)
    (0x00100030, "Z"),  # Patient's Birth Date
    (0x00100040, "Z"),  # Patient's Sex
    (0x00080050, "Z"),  # Accession Number
    (0x00080090, "Z"),  # Referring Physician's Name
    (0x00080080, "X/Z/D"),  # Institution Name
    (0x00080081, "X"),  # Institution Address
    (0x00081070, "X/Z/D"),  # Operators' Name
    (0x00181000, "X/Z/D"),  # Device Serial Number
    (0x00101000, "X"),  # Other Patient IDs
    (0x00101040, "X"),  # Patient's Address
    (0x00102154, "X"),  # Patient's Telephone Numbers
    (0x00400555, "X/Z"),  # Acquisition Context Sequence
    (0x0040A730, "D"),  # Content Sequence
    (0x0040A027, "D"),  # Verifying Organization
    (0x00120040, "D"),  # Clinical Trial Subject ID
    (0x00420011, "D"),  # Encapsulated Document
    (0x0020000D, "U"),  # Study Instance UID
    (0x0020000E, "U"),  # Series Instance UID
    (0x00080018, "U"),  # SOP Instance UID
    (0x00200052, "U"),  # Frame of Reference UID
    (0x00080020, "Z"),  # Study Date
    (0x00080030, "Z"),  # Study Time
    (0x00200010, "Z"),  # Study ID
    (0x00081110, "X/Z"),  # Referenced Study Sequence
    (0x00081140, "X/Z/U*"),  # Referenced Image Sequence
    (0x00082112, "X/Z/U*"),  # Source Image Sequence
]


def _code_of(keyword: str) -> str:
    return next(code for code, words in STANDARD_CODES.items() if keyword in words.split())


def test_counts_per_standard_code() -> None:
    """616 rows, split per code exactly as the 2024b table."""
    counts = Counter({code: len(words.split()) for code, words in STANDARD_CODES.items()})
    assert counts == Counter(_COUNTS)
    assert sum(counts.values()) == 616


@pytest.mark.parametrize(("tag", "code"), _SAMPLE, ids=[hex(t) for t, _ in _SAMPLE])
def test_sampled_rows(tag: int, code: str) -> None:
    """The keyword behind each sampled tag carries the standard's code and its resolution."""
    keyword = keyword_for_tag(tag)
    assert _code_of(keyword) == code
    assert PROFILE[keyword] == ACTIONS[code]


def test_every_keyword_is_a_dicom_attribute_and_listed_once() -> None:
    """A typo would be a keyword pydicom does not know: that attribute would be kept."""
    words = [w for text in STANDARD_CODES.values() for w in text.split()]
    assert len(words) == len(set(words))
    assert all(tag_for_keyword(w) is not None for w in words)


def test_choices_resolve_to_removal_or_uid_replacement() -> None:
    """No choice keeps a value: X/Z, X/D, X/Z/D, X/Z/U* remove; Z/D empties."""
    assert ACTIONS == {"D": "D", "Z": "Z", "X": "X", "U": "U", "Z/D": "Z", "X/Z": "X",
                       "X/D": "X", "X/Z/D": "X", "X/Z/U*": "X"}


def test_dummy_values_match_their_vr() -> None:
    """D rows get a dummy of their own VR (a UID, a date, a number, bytes), never the text
    'ANONYMOUS' in a binary, numeric or UID element, and never the original."""
    ds = Dataset()
    ds.AnnotationGroupUID = "1.2.3.4"  # D on a UI: replaced by a new UID
    ds.EncapsulatedDocument = b"%PDF-1.4 the patient's report"  # D on OB
    ds.VerifyingOrganization = "St Elsewhere"  # D on LO
    ds.FrameAcquisitionDateTime = "20240102030405"  # D on DT: a date, removed by default
    clean = deidentify(ds, DeidOptions(key=b"k" * 32))
    assert str(clean.AnnotationGroupUID).startswith("2.25.")
    assert clean.EncapsulatedDocument == b""
    assert clean.VerifyingOrganization == "ANONYMOUS"
    assert "FrameAcquisitionDateTime" not in clean
