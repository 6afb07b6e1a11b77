"""Options of `data import` beyond the sanitizer's common ones: the DICOM ones (`--window`,
`--dicom-bits`, `--dicom-dates`, `--allow-burned-in`, `--dicom-caption`) as a `DicomRequest`,
and `--pii-region`.

SECURITY: never reads a file; the UID key is fresh random bytes per import, never the pseudonym key.
"""

from __future__ import annotations

import re
import secrets

from pydicom.datadict import tag_for_keyword

from entrypoint.errors import ConfigError
from secure_trainer.privacy.dicom.profile import PROFILE
from secure_trainer.privacy.image_decode import DicomRequest

__all__ = ["dicom_request", "pii_region_option"]

_WINDOW_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*$")


def dicom_request(window: str | None, bits: int, dates: str, allow_burned_in: bool,
                  captions: list[str]) -> DicomRequest:
    """Validate the options. Raises ConfigError (exit 2)."""
    win = None
    if window:
        m = _WINDOW_RE.match(window)
        if not m or float(m.group(2)) <= 0:
            raise ConfigError("--window must be CENTER,WIDTH with WIDTH > 0, e.g. 40,400")
        win = (float(m.group(1)), float(m.group(2)))
    if bits not in (8, 16):
        raise ConfigError("--dicom-bits must be 8 or 16")
    if dates not in ("remove", "shift"):
        raise ConfigError("--dicom-dates must be remove or shift")
    for kw in captions:
        # A caption attribute the profile de-identifies would only ever be empty or a dummy;
        # refuse it so nobody believes a patient attribute is used.
        if tag_for_keyword(kw) is None or kw in PROFILE:
            raise ConfigError("--dicom-caption must name a non-identifying DICOM attribute")
    base = DicomRequest()
    return DicomRequest(uid_key=secrets.token_hex(32), dates=dates,  # type: ignore[arg-type]
                        window=win, bits=bits,  # type: ignore[arg-type]
                        allow_burned_in=allow_burned_in,
                        caption_attributes=tuple(captions) or base.caption_attributes)


def pii_region_option(region: str | None) -> str | None:
    """`--pii-region`: an ISO 3166 region phonenumbers knows, upper-cased. Raises ConfigError."""
    if region is None:
        return None
    import phonenumbers

    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError("--pii-region must be an ISO 3166 region code such as DE or US")
    return region.upper()
