"""What is installed: pinned Python packages from a hashed lock, Debian packages from dpkg status.

Must never: guess a version (an unpinned lock line or a status entry without Version raises
InputError), or count a removed package (dpkg `config-files`/`not-installed`) as installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from supply.errors import InputError

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;\\]+)")
_SOURCE = re.compile(r"^(\S+)(?:\s+\((\S+)\))?$")
_GONE = {"not-installed", "config-files"}


@dataclass(frozen=True)
class Package:
    """One package as advisories name it: for Debian the source package and its version."""

    ecosystem: str
    """'PyPI' or 'Debian:<release>'."""
    name: str
    version: str
    installed_as: tuple[str, ...] = ()
    """Debian: the binary packages built from this source (what `dpkg -l` shows)."""


def read_lock(path: Path) -> list[Package]:
    """Every `name==version` requirement of a pip lock file (hash lines and comments skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise InputError(f"lock {path.name}: unreadable") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith(("#", "--")) or line[0].isspace():
            continue  # blank, comment, option or the --hash continuation of the line above
        match = _PIN.match(line)
        if not match:
            raise InputError(f"lock {path.name}: line {number} is not pinned with ==")
        out.append(Package("PyPI", match.group(1), match.group(2)))
    return out


def _paragraphs(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs; continuation lines (leading space) are folded into their field."""
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, last = {}, ""
        elif line[0] in " \t":
            if last:
                current[last] += "\n" + line.strip()
        else:
            key, sep, value = line.partition(":")
            if sep:
                last = key.strip()
                current[last] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def read_dpkg_status(path: Path, release: str) -> list[Package]:
    """Installed Debian packages grouped by source package, ecosystem 'Debian:<release>'."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        raise InputError(f"dpkg status {path.name}: unreadable") from None
    sources: dict[tuple[str, str], list[str]] = {}
    for para in _paragraphs(text):
        name = para.get("Package")
        if not name:
            raise InputError(f"dpkg status {path.name}: an entry has no Package field")
        status = para.get("Status", "").split()
        if status and status[-1] in _GONE:
            continue
        version = para.get("Version")
        if not version:
            raise InputError(f"dpkg status {path.name}: an installed entry has no Version")
        source_name, source_version = name, version
        if "Source" in para:
            match = _SOURCE.match(para["Source"])
            if not match:
                raise InputError(f"dpkg status {path.name}: malformed Source field")
            # Source without a version: the source version equals the binary's.
            source_name, source_version = match.group(1), match.group(2) or version
        sources.setdefault((source_name, source_version), []).append(name)
    return [Package(f"Debian:{release}", src, ver, tuple(sorted(bins)))
            for (src, ver), bins in sorted(sources.items())]
