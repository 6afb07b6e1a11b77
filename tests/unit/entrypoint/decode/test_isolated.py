"""IsolatedDecoder's distrust of its child's answers, its env parsing and the frame codec."""

from __future__ import annotations

import io
import os
import time

import pytest
from PIL import Image

from entrypoint.decode.frames import FrameError, read_frame, read_frame_until, write_frame
from entrypoint.decode.isolated import IsolatedDecoder, decode_ids_from_env
from entrypoint.errors import ConfigError
from secure_trainer.privacy.image_decode import DecodeRequest, ImageRejected, decode_image


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG")
    return decode_image(buf.getvalue(), DecodeRequest()).data


@pytest.mark.parametrize(("header", "data", "reason"), [
    ({"ok": False, "reason": "corrupt"}, None, "corrupt"),
    ({"ok": False, "reason": "made_up"}, None, "decoder_crashed"),
    ({"ok": True, "kinds": ["gps"], "faces": -1}, b"x", "decoder_crashed"),
    ({"ok": True, "kinds": ["../etc/passwd"], "faces": 0}, b"x", "decoder_crashed"),
    ({"ok": True, "kinds": [], "faces": 0}, b"GIF89a not what was asked", "metadata_survived"),
    (["not", "an", "object"], None, "decoder_crashed"),
])
def test_answers_are_trusted_only_by_shape(header: object, data: bytes | None,
                                           reason: str) -> None:
    decoder = IsolatedDecoder.unprivileged_fallback()
    with pytest.raises(ImageRejected) as err:
        decoder._checked(header, None if data is None else [data], DecodeRequest())
    assert err.value.reason.value == reason


def test_a_well_formed_answer_passes() -> None:
    out = IsolatedDecoder.unprivileged_fallback()._checked(
        {"ok": True, "kinds": ["exif", "gps"], "faces": 2}, [_png()], DecodeRequest())
    assert out.metadata_kinds == ("exif", "gps") and out.faces == 2


def test_decode_ids_from_env() -> None:
    if os.geteuid() == 0:
        assert decode_ids_from_env({}) == (10001, 10001)
        assert decode_ids_from_env({"ST_TRAIN_UID": "2000", "ST_TRAIN_GID": "3000"}) == (2000, 3000)
        with pytest.raises(ConfigError):
            decode_ids_from_env({"ST_TRAIN_UID": "0"})
        with pytest.raises(ConfigError):
            decode_ids_from_env({"ST_TRAIN_UID": "abc"})
    assert decode_ids_from_env({"ST_TRAIN_UID": "none"}) is None


def test_frames_round_trip_and_limits() -> None:
    buf = io.BytesIO()
    write_frame(buf, b"hello")
    write_frame(buf, b"x" * 100)
    buf.seek(0)
    assert read_frame(buf, 10) == b"hello"
    with pytest.raises(FrameError):
        read_frame(buf, 10)  # larger than the limit
    assert read_frame(io.BytesIO(), 10) is None  # clean end of input
    rfd, wfd = os.pipe()
    try:
        with pytest.raises(FrameError) as err:
            read_frame_until(rfd, 10, time.monotonic() + 0.05)  # nothing comes
        assert err.value.timed_out
    finally:
        os.close(rfd)
        os.close(wfd)
