"""pydicom's own sample files used by the DICOM tests, and the identifying values they carry."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

# CT and MR (uncompressed), an RT dose (15 frames, 32-bit), an RGB RLE 2-frame (compressed),
# a JPEG 2000 (compressed, decoded through Pillow), an RT plan (no pixels).
RENDERED = ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "SC_rgb_rle_2frame.dcm",
            "JPEG2000.dcm")
FRAMES = {"CT_small.dcm": 1, "MR_small.dcm": 1, "rtdose.dcm": 15, "SC_rgb_rle_2frame.dcm": 2,
          "JPEG2000.dcm": 1}
NO_HANDLER = "JPEGLSNearLossless_08.dcm"  # JPEG-LS: no pixel handler installed
NO_PIXELS = "rtplan.dcm"


def path(name: str) -> Path:
    """The installed sample file."""
    found = get_testdata_file(name)
    assert found is not None, name
    return Path(str(found))


def read(name: str) -> Dataset:
    """The sample parsed."""
    return pydicom.dcmread(path(name))


def identifying_strings(ds: Dataset) -> set[str]:
    """Original values that must not survive import: names, ids, dates, UIDs, institutions."""
    out: set[str] = set()
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "SeriesDate",
               "AcquisitionDate", "ContentDate", "StudyInstanceUID", "SeriesInstanceUID",
               "SOPInstanceUID", "FrameOfReferenceUID", "InstitutionName",
               "ReferringPhysicianName", "AccessionNumber", "StudyID"):
        value = str(ds.get(kw, "") or "").strip()
        if len(value) >= 3:
            out.add(value)
    name = str(ds.get("PatientName", "") or "")
    out.update(part for part in name.split("^") if len(part) >= 3)
    return out
