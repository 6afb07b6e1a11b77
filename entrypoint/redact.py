"""Scrubbing of secrets, paths and identifiers from any text the envelope prints or logs.

`Redactor` replaces registered secrets, registered names (a run's dataset folder names and file
stems), absolute paths, workspace-relative paths (`datasets/...`, `models/...`, `runs/...`), URL
paths, e-mail addresses, Vault-style tokens, JWTs and long hex strings with fixed placeholders; `RedactingFilter` applies it to log
records; `redact_stream` filters a child's stdout/stderr line by line.
SECURITY: this module must never log or store what it scrubs; a registered secret is kept only in
the compiled pattern for the Redactor's lifetime (Python cannot wipe `str`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import IO

from entrypoint.secret import Secret

__all__ = ["PLACEHOLDERS", "RedactingFilter", "Redactor", "redact_stream"]

PLACEHOLDERS = {
    "secret": "<secret>",
    "path": "<path>",
    "email": "<email>",
    "token": "<token>",
    "hex": "<hex>",
    "jwt": "<jwt>",
    "relpath": "<path>",
    "name": "<name>",
}
# coupling: the workspace LAYOUT (entrypoint/workspace/gocryptfs.py); a relative path starting
# with one of these names data of the workspace.
_WORKSPACE_TOPS = ("datasets", "models", "runs", "tmp", "audit", r"\.secure-trainer")
_NAME_MIN = 4  # shorter names are too common to scrub without destroying the text

# Order matters: tokens/JWT/hex before paths, so "/x/hvs.abc" loses the token either way.
_GENERIC = re.compile(
    r"(?P<jwt>\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,})"
    # Vault/OpenBao tokens: hvs./hvb./hvr. (new) and s./b./r. (legacy) + ≥20 base62 chars.
    r"|(?P<token>\b(?:hv[sbr]|[sbr])\.[A-Za-z0-9_-]{20,})"
    r"|(?P<hex>\b[0-9a-fA-F]{32,}\b)"
    r"|(?P<email>\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\b)"
    # URL: keep scheme and host (useful to debug), drop the path, which may name a secret.
    r"|(?P<url>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/\"'<>]+)(?P<urlpath>/[^\s\"'<>]*)?"
    # Workspace-relative path (what `run` passes the trainer): datasets/people/10_jane/x.png.
    rf"|(?P<relpath>(?<![\w.:/~-])(?:{'|'.join(_WORKSPACE_TOPS)})/[\w.@%+=,~-]*"
    r"(?:/[\w.@%+=,~-]+)*/?)"
    # Absolute, home-relative or dot-relative path. The look-behind keeps ratios (3/4), rates
    # (it/s) and URL pieces out.
    r"|(?P<path>(?<![\w.:/~-])(?:~|\.{1,2})?/[\w.@%+=,~-]+(?:/[\w.@%+=,~-]+)*/?)"
)


def _sub_generic(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "urlpath" or (kind == "url" and match.group("urlpath")):
        return f"{match.group('url')}/<path>"
    if kind == "url":
        return match.group(0)
    assert kind is not None
    return PLACEHOLDERS[kind]


class Redactor:
    """Scrubs text; thread-safe; `register` adds literal secrets (shortest 4 characters).

    Raises nothing: scrubbing never fails, it only replaces.
    """

    def __init__(self, secrets: list[str | bytes | Secret] | None = None) -> None:
        self._lock = threading.Lock()
        self._literals: list[str] = []
        self._literal_re: re.Pattern[str] | None = None
        self._names: list[str] = []
        self._name_re: re.Pattern[str] | None = None
        for value in secrets or []:
            self.register(value)

    def register(self, value: str | bytes | bytearray | Secret) -> None:
        """Scrub every later occurrence of `value` (a passphrase, token, key). Short or empty
        values are ignored: replacing 1-3 characters would destroy the text and protect nothing.
        """
        if isinstance(value, Secret):
            text = value.reveal().decode("utf-8", "replace")
        elif isinstance(value, (bytes, bytearray)):
            text = bytes(value).decode("utf-8", "replace")
        else:
            text = value
        if len(text) < 4:
            return
        with self._lock:
            if text in self._literals:
                return
            self._literals.append(text)
            # Longest first so a secret that contains another is replaced whole.
            ordered = sorted(self._literals, key=len, reverse=True)
            self._literal_re = re.compile("|".join(re.escape(s) for s in ordered))

    def register_literals(self, values: Iterable[str]) -> None:
        """`register` for many values at once (one compilation, e.g. a dataset's caption lines)."""
        with self._lock:
            known = set(self._literals)
            self._literals += [v for v in dict.fromkeys(values) if len(v) >= 4 and v not in known]
            ordered = sorted(self._literals, key=len, reverse=True)
            self._literal_re = (re.compile("|".join(re.escape(v) for v in ordered))
                                if ordered else None)

    def register_name(self, name: str) -> None:
        """Scrub `name` (a dataset folder name, a file stem) wherever it stands as a word of its
        own (not inside a longer run of letters and digits); shorter than 4 characters: ignored.
        """
        self.register_names([name])

    def register_names(self, names: Iterable[str]) -> None:
        """`register_name` for many names at once (one compilation)."""
        with self._lock:
            known = set(self._names)
            fresh = [n for n in dict.fromkeys(names) if len(n) >= _NAME_MIN and n not in known]
            if not fresh:
                return
            self._names += fresh
            ordered = sorted(self._names, key=len, reverse=True)
            self._name_re = re.compile(r"(?<![A-Za-z0-9])(?:"
                                       + "|".join(re.escape(n) for n in ordered)
                                       + r")(?![A-Za-z0-9])")

    def scrub(self, text: str) -> str:
        """Return `text` with secrets, paths, e-mails, tokens, JWTs, long hex and registered
        names replaced."""
        literal_re = self._literal_re
        if literal_re is not None:
            text = literal_re.sub(PLACEHOLDERS["secret"], text)
        text = _GENERIC.sub(_sub_generic, text)
        name_re = self._name_re
        return name_re.sub(PLACEHOLDERS["name"], text) if name_re is not None else text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs the formatted message and any traceback of a record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message (args merged) and exception text by scrubbed text."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = self._redactor.scrub(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redactor.scrub(record.stack_info)
        return True


# A line longer than this without a newline is flushed in pieces (progress bars, binary junk);
# a secret split across two pieces could survive, so the cap is far above any real secret's length.
_MAX_PENDING = 64 * 1024
_LINE_END = re.compile(rb"[\r\n]")


def redact_stream(src_fd: int, dst: IO[str], redactor: Redactor, *, chunk: int = 65536) -> int:
    """Copy `src_fd` to `dst` line by line (\\n and \\r end a line), scrubbing each line.

    Reads until EOF, closes nothing, flushes `dst` after each chunk so output stays live.
    Returns the number of lines written. Raises OSError only for a broken `dst`.
    """
    pending = b""
    lines = 0
    while True:
        try:
            data = os.read(src_fd, chunk)
        except InterruptedError:
            continue
        if not data:
            break
        pending += data
        out: list[str] = []
        start = 0
        for m in _LINE_END.finditer(pending):
            end = m.end()
            piece = pending[start:m.start()].decode("utf-8", "replace")
            out.append(redactor.scrub(piece) + m.group().decode())
            start = end
            lines += 1
        pending = pending[start:]
        if len(pending) > _MAX_PENDING:
            out.append(redactor.scrub(pending.decode("utf-8", "replace")))
            pending = b""
        if out:
            dst.write("".join(out))
            dst.flush()
    if pending:
        dst.write(redactor.scrub(pending.decode("utf-8", "replace")))
        dst.flush()
        lines += 1
    return lines
