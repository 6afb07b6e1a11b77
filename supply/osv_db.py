"""Load a local OSV advisory directory (OSV JSON or the PyPA database's YAML) into an index.

Must never: fetch anything, execute YAML tags (safe loader only), or drop an advisory silently
(unreadable files raise InputError; withdrawn advisories are counted, not matched).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from supply.errors import InputError, NoDatabase

_SUFFIXES = (".json", ".yaml", ".yml")
# libyaml's safe loader when built in (about 10x faster on the 2,600-file PyPA database); both
# refuse Python tags.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Files in a checkout of an advisory repository that are not advisories.
_NOT_ADVISORIES = {"schema.json", "package.json", ".pre-commit-config.yaml"}


def normalize_name(ecosystem: str, name: str) -> str:
    """PyPI names compare after PEP 503 normalisation; other ecosystems compare exactly."""
    if base_ecosystem(ecosystem) == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name


def base_ecosystem(ecosystem: str) -> str:
    """'Debian:12' -> 'Debian'; the release suffix narrows, it does not rename."""
    return ecosystem.split(":", 1)[0]


@dataclass(frozen=True)
class Affected:
    """One `affected` entry of an advisory: a package, its ranges and explicit versions."""

    ecosystem: str
    """As written in the advisory, e.g. 'PyPI' or 'Debian:12'."""
    name: str
    ranges: tuple[Mapping[str, Any], ...]
    """The raw `ranges` objects (type + events); evaluated by supply.osv_match."""
    versions: tuple[str, ...]
    """The explicit `versions` list (exact matches)."""


@dataclass(frozen=True)
class Advisory:
    """One OSV advisory, reduced to what matching and reporting need."""

    id: str
    aliases: tuple[str, ...]
    modified: str
    summary: str
    affected: tuple[Affected, ...]


@dataclass
class Database:
    """Advisories indexed by (base ecosystem, normalised package name)."""

    root: Path
    by_package: dict[tuple[str, str], list[tuple[Advisory, Affected]]] = field(default_factory=dict)
    advisories: int = 0
    withdrawn: int = 0
    newest_modified: str = ""
    """ISO timestamp of the most recently modified advisory: the database's date."""

    def lookup(self, ecosystem: str, name: str) -> list[tuple[Advisory, Affected]]:
        """Every (advisory, affected entry) naming this package in this ecosystem family."""
        key = (base_ecosystem(ecosystem), normalize_name(ecosystem, name))
        return self.by_package.get(key, [])


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if (path.suffix in _SUFFIXES and path.name not in _NOT_ADVISORIES and path.is_file()
                and not any(part.startswith(".") for part in path.relative_to(root).parts)):
            yield path


def _parse(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_SAFE_LOADER)  # nosec B506
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise InputError(f"advisory {path.name}: unreadable ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"advisory {path.name}: not an OSV object")
    return data


def _advisory(data: Mapping[str, Any], path: Path) -> Advisory:
    ident = data.get("id")
    if not isinstance(ident, str) or not ident:
        raise InputError(f"advisory {path.name}: no id")
    affected = []
    for entry in data.get("affected") or ():
        package = entry.get("package") or {}
        if not package.get("ecosystem") or not package.get("name"):
            continue  # OSV allows affected entries without a package (e.g. git-only ranges)
        affected.append(Affected(
            ecosystem=str(package["ecosystem"]), name=str(package["name"]),
            ranges=tuple(entry.get("ranges") or ()),
            versions=tuple(str(v) for v in entry.get("versions") or ())))
    # PyYAML turns unquoted timestamps into datetime objects; keep one textual ISO form.
    modified = data.get("modified", "")
    modified = modified.isoformat() if isinstance(modified, datetime) else str(modified)
    return Advisory(id=ident, aliases=tuple(str(a) for a in data.get("aliases") or ()),
                    modified=modified, summary=str(data.get("summary") or ""),
                    affected=tuple(affected))


def load(root: Path) -> Database:
    """Read every advisory under `root`; NoDatabase if there is none."""
    if not root.is_dir():
        raise NoDatabase("no advisory directory")
    db = Database(root=root)
    for path in _files(root):
        data = _parse(path)
        if "id" not in data or "affected" not in data and "withdrawn" not in data:
            continue  # some other JSON/YAML in the tree (a schema, a config): not an advisory
        advisory = _advisory(data, path)
        if data.get("withdrawn"):
            db.withdrawn += 1
            continue
        db.advisories += 1
        db.newest_modified = max(db.newest_modified, advisory.modified)
        for affected in advisory.affected:
            key = (base_ecosystem(affected.ecosystem),
                   normalize_name(affected.ecosystem, affected.name))
            db.by_package.setdefault(key, []).append((advisory, affected))
    if db.advisories == 0:
        raise NoDatabase("the advisory directory holds no advisory")
    return db
