"""De-identify a parsed DICOM dataset in place by the Basic Application Level Confidentiality
Profile (profile.py), plus: every private tag, curve and overlay group removed, every other
date/time removed or shifted, every UID that is not a registered DICOM UID replaced.

Runs on the decoder side (entrypoint/decode/): the UID/date key is a per-import random key from
the supervisor, never the pseudonym key. SECURITY: never logs, never returns an original value
except the PatientID read by `patient_id()` before de-identification (the supervisor HMACs it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from secure_trainer.privacy.dicom.profile import PROFILE

__all__ = ["DateMode", "DeidOptions", "deidentify", "new_uid"]

DateMode = Literal["remove", "shift"]
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_MAX_SHIFT_DAYS = 3650
_DUMMY: dict[str, object] = {"PN": "ANONYMOUS", "DA": "19000101", "TM": "000000",
                              "DT": "19000101000000", "IS": "0", "DS": "0", "AS": "000D",
                              "US": 0, "SS": 0, "UL": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0,
                              "FD": 0.0, "AT": 0}
_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
# The elements pixel rendering needs and the de-identifier must not blank (none identifies).
_TAGS = {kw: tag_for_keyword(kw) for kw in PROFILE}


@dataclass(frozen=True)
class DeidOptions:
    """`key`: per-import random bytes for consistent UIDs and date shifts (never the pseudonym
    key); `dates`: remove every date/time, or shift dates by a per-patient offset."""

    key: bytes
    dates: DateMode = "remove"


def new_uid(key: bytes, uid: str) -> str:
    """A consistent replacement for `uid`: `2.25.<128-bit keyed HMAC as an integer>`."""
    digest = hmac.new(key, b"uid\x00" + uid.encode(), hashlib.sha256).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def _shift_days(key: bytes, patient_id: str) -> int:
    digest = hmac.new(key, b"date\x00" + patient_id.encode(), hashlib.sha256).digest()
    return -1 - int.from_bytes(digest[:4], "big") % _MAX_SHIFT_DAYS  # always into the past


def _shift_date(value: str, days: int) -> str:
    try:
        day = dt.datetime.strptime(value[:8], "%Y%m%d").date()
    except ValueError:
        return ""
    return (day + dt.timedelta(days=days)).strftime("%Y%m%d")


def _is_registered(uid: str) -> bool:
    """A UID from the DICOM registry (SOP classes, transfer syntaxes, coding schemes)."""
    return uid.startswith("1.2.840.10008.") and UID(uid).name != uid


def _replace_uid(elem: DataElement, key: bytes) -> None:
    if elem.value in (None, ""):
        return
    if elem.VM > 1:
        elem.value = [new_uid(key, str(v)) for v in elem.value]
    else:
        elem.value = new_uid(key, str(elem.value))


def _apply(ds: Dataset, opts: DeidOptions, days: int) -> None:
    for tag in list(ds.keys()):
        elem = ds[tag]
        group = tag.group
        if (tag.is_private or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF):
            del ds[tag]
            continue
        action = PROFILE.get(elem.keyword)
        if action == "D" and elem.VR in _DATE_VRS:
            action = None  # a dummy date still says "a date": removed or shifted like the rest
        if action == "X":
            del ds[tag]
        elif action == "Z":
            elem.value = [] if elem.VR == "SQ" else ""
        elif action == "D" and elem.VR == "UI":
            _replace_uid(elem, opts.key)  # a dummy UID: the consistent replacement
        elif action == "D":
            if elem.VR == "SQ":
                del ds[tag]  # a dummy sequence carries nothing; removal is the safe dummy
            else:
                elem.value = (b"" if elem.VR in _BINARY_VRS
                              else _DUMMY.get(elem.VR, "ANONYMOUS"))
        elif action == "U" or (elem.VR == "UI" and not _is_registered(str(elem.value or ""))
                               and elem.keyword != "TransferSyntaxUID"):
            _replace_uid(elem, opts.key)
        elif elem.VR in _DATE_VRS:
            if opts.dates == "shift" and elem.VR in ("DA", "DT") and elem.value:
                elem.value = _shift_date(str(elem.value), days)
            else:
                del ds[tag]
        elif elem.VR == "SQ":
            for item in elem.value:
                _apply(item, opts, days)


def patient_id(ds: Dataset) -> str:
    """The source PatientID (before `deidentify`), '' when absent."""
    return str(ds.get("PatientID", "") or "")


def deidentify(ds: Dataset, opts: DeidOptions) -> Dataset:
    """De-identify `ds` in place (and its file meta's instance UID); returns it."""
    days = _shift_days(opts.key, patient_id(ds))
    _apply(ds, opts, days)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        _replace_uid(meta["MediaStorageSOPInstanceUID"], opts.key)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "PS3.15 E.1 Basic Profile (secure-trainer)"
    return ds


def profile_tags() -> dict[str, BaseTag]:
    """Keyword → tag of every attribute the profile lists (for checks and tests)."""
    return dict(_TAGS)  # type: ignore[arg-type]
