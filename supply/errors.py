"""Errors of the supply-chain tools; each maps to one exit code of `python -m supply.osv_scan`.

Must never: carry a file's content (an advisory or status file may be huge or hostile) in a
message; name the file and the problem only.
"""

from __future__ import annotations


class SupplyError(Exception):
    """Base error: the scan could not give a verdict (exit 2)."""

    exit_code = 2


class InputError(SupplyError):
    """A lock, dpkg status, advisory or allow-list file is unreadable or malformed (exit 2)."""


class NoDatabase(SupplyError):
    """The advisory directory is missing or holds no advisory: SKIP, not a verdict (exit 4)."""

    exit_code = 4
