"""Redaction of secrets, paths, e-mails, tokens and hex keys; the log filter and the line filter."""

from __future__ import annotations

import io
import logging
import os
import threading
import time

import pytest

from entrypoint.redact import RedactingFilter, Redactor, redact_stream
from entrypoint.secret import Secret

CASES = [
    ("loaded /data/private/cat_01.png ok", "loaded <path> ok"),
    ("see ~/models/x.safetensors and ./rel/dir", "see <path> and <path>"),
    ("token hvs.CAESIJ0abcdefghijklmnopqrstuv here", "token <token> here"),
    ("legacy s.AbCdEfGhIjKlMnOpQrStUvWx", "legacy <token>"),
    ("mail jane.doe+x@example.co.uk now", "mail <email> now"),
    ("key=00112233445566778899aabbccddeeff0011", "key=<hex>"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlXzEyMw", "jwt <jwt>"),
    ("GET http://127.0.0.1:8200/v1/secret/data/ws failed",
     "GET http://127.0.0.1:8200/<path> failed"),
    # must stay untouched: ratios, rates, times, small numbers, plain words
    ("step 5/10 3.2it/s loss=0.0123 lr=1e-4 12:30", "step 5/10 3.2it/s loss=0.0123 lr=1e-4 12:30"),
    ("epoch 1 done, sha 1234abcd", "epoch 1 done, sha 1234abcd"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_scrub_cases(text: str, expected: str) -> None:
    assert Redactor().scrub(text) == expected


def test_registered_secrets_win_and_short_ones_are_ignored() -> None:
    r = Redactor([Secret("correct horse battery"), "abc"])
    r.register(b"s3cr3t-bytes")
    out = r.scrub("pw=correct horse battery b=s3cr3t-bytes abc")
    assert out == "pw=<secret> b=<secret> abc"
    assert "correct" not in repr(r)


def test_logging_filter_scrubs_args_and_traceback() -> None:
    r = Redactor(["topsecretvalue"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(r))
    log = logging.getLogger("test_redact_filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("opening %s with %s", "/srv/data/x.png", "topsecretvalue")
        try:
            raise ValueError("bad file /srv/data/y.png")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "opening <path> with <secret>" in text
    assert "/srv/data" not in text and "topsecretvalue" not in text
    assert "ValueError: bad file <path>" in text


def test_redact_stream_lines_crs_and_partial_tail() -> None:
    r = Redactor(["hunter22"])
    rd, wr = os.pipe()
    out = io.StringIO()
    payload = b"a /x/y\nprogress 1\rprogress 2\rpw hunter22\nno newline /tail/z"

    def feed() -> None:
        for i in range(0, len(payload), 7):  # split writes mid-line and mid-secret
            os.write(wr, payload[i:i + 7])
        os.close(wr)

    t = threading.Thread(target=feed)
    t.start()
    lines = redact_stream(rd, out, r)
    t.join()
    os.close(rd)
    assert out.getvalue() == "a <path>\nprogress 1\rprogress 2\rpw <secret>\nno newline <path>"
    assert lines == 5


def test_fast_enough_for_training_output() -> None:
    r = Redactor([Secret.generate(), "another-secret-value"])
    line = "step 120/1000 loss=0.1234 lr=1.0e-04 3.21it/s epoch 2 saved checkpoint to <state>\n"
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        r.scrub(line)
    per_line_us = (time.perf_counter() - start) / n * 1e6
    # A trainer prints at most a few hundred lines/s; 200 µs/line would still be 5000 lines/s.
    assert per_line_us < 200, per_line_us
