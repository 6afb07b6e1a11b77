"""Decode one untrusted DICOM file on the decoder side: parse, refuse burned-in text, render
the frames to PNG, de-identify the header, build the caption from it. Bytes in, bytes out.

SECURITY: never opens a file, never logs, never sees the pseudonym key; returns only PNG frames
(fresh pixels, no text chunks), the source PatientID (for the supervisor's keyed subject id) and
a caption of allow-listed attributes read after de-identification.
"""

from __future__ import annotations

import io
import warnings

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from secure_trainer.privacy.dicom.deid import DeidOptions, deidentify, patient_id
from secure_trainer.privacy.dicom.pixels import decoder_available, frame_count, render_frames
from secure_trainer.privacy.image_decode import (
    DecodedImage,
    DecodeRequest,
    DicomInfo,
    ImageRejected,
    RejectReason,
)
from secure_trainer.privacy.imagemeta import inspect_bytes

__all__ = ["decode_dicom"]

_MAX_CAPTION_VALUE = 64
# Well under the supervisor's shape check (isolated.py, 4096): a hostile header must cost its
# own file only, never be an answer that makes the supervisor stop the decoder.
_MAX_PATIENT_ID = 1024
_MAX_CAPTION = 1024


def _parse(raw: bytes) -> Dataset:
    try:
        return dcmread(io.BytesIO(raw), force=False)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError):
        raise ImageRejected(RejectReason.CORRUPT) from None


def _caption(ds: Dataset, attributes: tuple[str, ...]) -> str:
    values: list[str] = []
    for kw in attributes:
        value = ds.get(kw)
        if value is None or getattr(value, "VR", None) == "SQ" or isinstance(value, Dataset):
            continue
        text = " ".join(str(value).split())[:_MAX_CAPTION_VALUE]
        if text:
            values.append(text)
    return ", ".join(values)[:_MAX_CAPTION]


def decode_dicom(raw: bytes, request: DecodeRequest) -> DecodedImage:
    """Render and de-identify one DICOM file. Raises ImageRejected (corrupt, bomb, burned-in,
    unsupported transfer syntax, metadata in an output)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings quote header values
        return _decode_dicom(raw, request)


def _decode_dicom(raw: bytes, request: DecodeRequest) -> DecodedImage:
    opts = request.dicom
    ds = _parse(raw)
    if "PixelData" not in ds:
        raise ImageRejected(RejectReason.UNSUPPORTED)  # RT plans, structured reports: no image
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES" and not opts.allow_burned_in:
        raise ImageRejected(RejectReason.BURNED_IN_ANNOTATION)
    try:
        pixels = int(ds.Rows) * int(ds.Columns) * frame_count(ds)
    except (AttributeError, TypeError, ValueError):
        raise ImageRejected(RejectReason.CORRUPT) from None
    if pixels > request.max_pixels:
        raise ImageRejected(RejectReason.DECOMPRESSION_BOMB)
    if not decoder_available(ds):
        raise ImageRejected(RejectReason.UNSUPPORTED_TRANSFER_SYNTAX)
    source_id = patient_id(ds)
    if len(source_id) > _MAX_PATIENT_ID:
        raise ImageRejected(RejectReason.CORRUPT)  # PatientID is LO: 64 characters at most
    try:
        frames = render_frames(ds, opts.window, opts.bits)
    except MemoryError:
        raise ImageRejected(RejectReason.TOO_LARGE) from None
    except Exception:  # noqa: BLE001 — any pixel-handler failure rejects this one file
        raise ImageRejected(RejectReason.CORRUPT) from None
    deidentify(ds, DeidOptions(key=bytes.fromhex(opts.uid_key) or b"\0", dates=opts.dates))
    if any(inspect_bytes(f).has_any for f in frames):
        raise ImageRejected(RejectReason.METADATA_SURVIVED)
    return DecodedImage(data=frames[0], metadata_kinds=("dicom_header",), faces=0,
                        frames=tuple(frames[1:]),
                        dicom=DicomInfo(patient_id=source_id,
                                        caption=_caption(ds, opts.caption_attributes)))


def warm_up_dicom(request: DecodeRequest) -> None:
    """Decode a tiny generated DICOM file (uncompressed and RLE) in this process, so every
    module the DICOM path needs is loaded before the decoder forks and drops privileges."""
    import numpy as np
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import (
        UID,
        ExplicitVRLittleEndian,
        RLELossless,
        SecondaryCaptureImageStorage,
    )

    for syntax in (ExplicitVRLittleEndian, RLELossless):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = UID("2.25.1")
        ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, UID("2.25.1")
        ds.Rows = ds.Columns = 4
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 0
        ds.PixelData = np.arange(16, dtype=np.uint16).tobytes()
        if syntax == RLELossless:
            ds.compress(RLELossless)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        decode_dicom(buf.getvalue(), request)
