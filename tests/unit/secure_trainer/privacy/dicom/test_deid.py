"""The Annex E de-identifier on pydicom's real sample files: every listed attribute loses its
original value, private tags, curves and overlays go, UIDs are replaced consistently."""

from __future__ import annotations

import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from secure_trainer.privacy.dicom.deid import DeidOptions, deidentify, new_uid
from secure_trainer.privacy.dicom.profile import PROFILE
from tests.unit.secure_trainer.privacy.dicom.samples import NO_PIXELS, RENDERED, read

KEY = b"k" * 32


def _walk(ds: Dataset) -> list[tuple[Dataset, int]]:
    out = []
    for elem in ds:
        out.append((ds, elem.tag))
        if elem.VR == "SQ":
            for item in elem.value:
                out.extend(_walk(item))
    return out


def test_profile_keywords_are_dicom_attributes() -> None:
    """Every keyword in the table names a real attribute (a typo would silently keep data)."""
    assert len(PROFILE) > 200
    assert all(tag_for_keyword(kw) is not None for kw in PROFILE)
    assert PROFILE["PatientName"] == "Z" and PROFILE["StudyInstanceUID"] == "U"
    assert PROFILE["InstitutionName"] == "X" and PROFILE["OtherPatientIDs"] == "X"


@pytest.mark.parametrize("name", [*RENDERED, NO_PIXELS, "priv_SQ.dcm", "examples_overlay.dcm"])
def test_no_profile_attribute_keeps_its_original_value(name: str) -> None:
    """The source mapping check: each profile attribute present in the source (at any depth
    the de-identifier keeps) is removed, emptied, a dummy, or a new UID afterwards."""
    original = read(name)
    before = {kw: original.get(kw) for kw in PROFILE if kw in original}
    before_values = {kw: str(e) for kw, e in before.items() if str(e or "").strip()}
    clean = deidentify(read(name), DeidOptions(key=KEY))
    for kw, value in before_values.items():
        after = clean.get(kw)
        assert after is None or str(after) != value or value == "ANONYMOUS", kw
    for ds, tag in _walk(clean):
        elem = ds[tag]
        assert not tag.is_private
        assert not (0x5000 <= tag.group <= 0x50FF or 0x6000 <= tag.group <= 0x60FF)
        # Default: every date/time removed (Type 2 ones of the profile: present but empty).
        assert elem.VR not in ("DA", "DT", "TM") or not elem.value
        if elem.keyword in PROFILE and PROFILE[elem.keyword] == "U" and elem.value:
            assert str(elem.value).startswith("2.25.")
    assert clean.PatientIdentityRemoved == "YES"
    assert clean.get("SOPClassUID") == original.get("SOPClassUID")  # registry UIDs stay


def test_private_tags_present_in_source_are_removed() -> None:
    """priv_SQ.dcm carries private sequences; none survive."""
    original = read("priv_SQ.dcm")
    assert any(t.is_private for _, t in _walk(original))
    assert not any(t.is_private for _, t in _walk(deidentify(original, DeidOptions(key=KEY))))


def test_uids_consistent_per_key_and_unlinkable_across_keys() -> None:
    """Same key → same replacement (a series stays a series); another key → another UID."""
    a = deidentify(read("CT_small.dcm"), DeidOptions(key=KEY))
    b = deidentify(read("CT_small.dcm"), DeidOptions(key=KEY))
    c = deidentify(read("CT_small.dcm"), DeidOptions(key=b"x" * 32))
    assert a.StudyInstanceUID == b.StudyInstanceUID != c.StudyInstanceUID
    uid = str(a.StudyInstanceUID)
    assert uid.startswith("2.25.") and len(uid) <= 64 and int(uid[5:]) < 2**128
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert new_uid(KEY, "1.2.3") == new_uid(KEY, "1.2.3") != new_uid(KEY, "1.2.4")


def test_dates_shift_option_moves_dates_into_the_past_per_patient() -> None:
    """--dicom-dates shift: the profile's own dates are still emptied/removed; other dates
    move by one keyed offset per patient, never kept."""
    original = read("MR_small.dcm")
    dated = {e.keyword: str(e.value) for e in original if e.VR == "DA" and e.value}
    clean = deidentify(read("MR_small.dcm"), DeidOptions(key=KEY, dates="shift"))
    for kw, value in dated.items():
        after = str(clean.get(kw, "") or "")
        assert after != value
        if after:
            assert after < value
