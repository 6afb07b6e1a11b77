"""DICOM through the import sanitizer (in-process decoder) on pydicom's real sample files:
one PNG per frame, no original name/id/date/UID in PNG bytes or captions, keyed subjects,
burned-in and unsupported-syntax refusals counted."""

from __future__ import annotations

import io
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from secure_trainer.privacy.decode_any import decode_any
from secure_trainer.privacy.image_decode import DecodeRequest, DicomRequest, ImageRejected
from secure_trainer.privacy.imagemeta import inspect_bytes
from secure_trainer.privacy.pseudonym import Pseudonymizer
from secure_trainer.privacy.sanitize import sanitize_tree
from tests.unit.secure_trainer.privacy.dicom.samples import (
    FRAMES,
    NO_HANDLER,
    NO_PIXELS,
    RENDERED,
    identifying_strings,
    path,
    read,
)

KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src" / "5_scans"
    root.mkdir(parents=True)
    for name in (*RENDERED, NO_HANDLER, NO_PIXELS):
        shutil.copyfile(path(name), root / name)
    # Found by its preamble, not its name: an extension-less copy of the MR.
    shutil.copyfile(path("MR_small.dcm"), root / "IM000042")
    burned = read("CT_small.dcm")
    burned.BurnedInAnnotation = "YES"
    burned.save_as(root / "burned.dcm")
    return root.parent


def test_sample_tree_imports_frames_subjects_and_counts(src: Path, tmp_path: Path) -> None:
    """Every rendered sample → its frames as PNG; RT plan, JPEG-LS, burned-in refused."""
    pseudo = Pseudonymizer(KEY)
    report = sanitize_tree(src, tmp_path / "dst", pseudonymizer=pseudo)
    assert report.rejected == Counter({"unsupported": 1, "unsupported_transfer_syntax": 1,
                                       "burned_in_annotation": 1})
    expected_frames = sum(FRAMES.values()) + 1  # + the extension-less MR
    assert report.images_written == expected_frames == len(report.files)
    by_source = Counter(f.source_rel.name for f in report.files)
    assert by_source == Counter({**FRAMES, "IM000042": 1})
    subjects = {f.source_rel.name: f.subject for f in report.files}
    for name in RENDERED:
        assert subjects[name] == pseudo.subject(str(read(name).PatientID))
    assert subjects["IM000042"] == subjects["MR_small.dcm"]  # same patient, same subject
    assert pseudo.subject("4MR1") != Pseudonymizer(b"z" * 32).subject("4MR1")  # keyed
    multi = sorted(f.rel_path.name for f in report.files if f.source_rel.name == "rtdose.dcm")
    assert [n[-10:] for n in multi[:2]] == ["_f0000.png", "_f0001.png"]


def test_outputs_carry_no_identifying_value(src: Path, tmp_path: Path) -> None:
    """PNG bytes and captions hold none of the sources' names, ids, dates or UIDs, and the
    PNGs carry no metadata chunk at all."""
    dst = tmp_path / "dst"
    sanitize_tree(src, dst, pseudonymizer=Pseudonymizer(KEY))
    secrets_ = set().union(*(identifying_strings(read(n)) for n in RENDERED))
    assert {"CompressedSamples", "4MR1", "Lestrade", "1CT1"} <= secrets_
    outputs = [p for p in dst.rglob("*") if p.is_file()]
    captions = [p for p in outputs if p.suffix == ".txt"]
    assert captions and {p.read_text() for p in captions} >= {"CT", "MR", "NM, WHOLE BODY"}
    for p in outputs:
        data = p.read_bytes()
        for s in secrets_:
            assert s.encode() not in data, (p.suffix, s)
        if p.suffix == ".png":
            assert not inspect_bytes(data).has_any


def test_window_and_bit_depth() -> None:
    """--window and 16-bit: a narrow window saturates more pixels; 16-bit PNG is I;16."""
    raw = path("CT_small.dcm").read_bytes()
    wide = decode_any(raw, DecodeRequest(dicom=DicomRequest(uid_key="aa", window=(40, 4000))))
    narrow = decode_any(raw, DecodeRequest(dicom=DicomRequest(uid_key="aa", window=(40, 80))))
    a = np.asarray(Image.open(io.BytesIO(wide.data)))
    b = np.asarray(Image.open(io.BytesIO(narrow.data)))
    assert a.dtype == np.uint8 and ((b == 0) | (b == 255)).mean() > ((a == 0) | (a == 255)).mean()
    deep = decode_any(raw, DecodeRequest(dicom=DicomRequest(uid_key="aa", bits=16)))
    with Image.open(io.BytesIO(deep.data)) as im:
        assert im.mode.startswith("I") and np.asarray(im).max() > 255


def test_burned_in_allowed_only_with_opt_in() -> None:
    """BurnedInAnnotation=YES is refused unless allow_burned_in."""
    ds = read("CT_small.dcm")
    ds.BurnedInAnnotation = "YES"
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(ImageRejected, match="burned_in_annotation"):
        decode_any(buf.getvalue(), DecodeRequest())
    ok = decode_any(buf.getvalue(), DecodeRequest(dicom=DicomRequest(allow_burned_in=True)))
    assert ok.dicom is not None and ok.dicom.patient_id == "1CT1"


def test_caption_attributes_come_from_the_deidentified_header() -> None:
    """A profile attribute asked for as caption comes out empty: captions are read after
    de-identification."""
    raw = path("CT_small.dcm").read_bytes()
    out = decode_any(raw, DecodeRequest(dicom=DicomRequest(
        caption_attributes=("Modality", "InstitutionName", "PatientName"))))
    assert out.dicom is not None and out.dicom.caption == "CT"


def test_oversized_patient_id_rejects_that_file_only() -> None:
    """A hostile PatientID far beyond LO's 64 characters is `corrupt` for this file (the
    supervisor's shape check would otherwise stop the decoder for every later file)."""
    ds = read("CT_small.dcm")
    ds.PatientID = "x" * 5000
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(ImageRejected, match="corrupt"):
        decode_any(buf.getvalue(), DecodeRequest())
