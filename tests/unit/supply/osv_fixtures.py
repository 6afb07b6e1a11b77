"""Small OSV advisories written by the tests (JSON and the PyPA database's YAML form)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def advisory(ident: str, ecosystem: str, name: str, ranges: list[dict[str, Any]],
             versions: list[str] | None = None, aliases: list[str] | None = None,
             modified: str = "2024-05-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
    """One OSV record with one affected package."""
    return {"id": ident, "modified": modified, "aliases": aliases or [],
            "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                          "ranges": ranges, "versions": versions or []}], **extra}


def ecosystem_range(*events: tuple[str, str], kind: str = "ECOSYSTEM") -> dict[str, Any]:
    """A range of `kind` from (event, version) pairs, in the order given."""
    return {"type": kind, "events": [{k: v} for k, v in events]}


def write(root: Path, record: dict[str, Any], fmt: str = "json") -> Path:
    """Write `record` under root/<first letter>/ as JSON or YAML; returns the file."""
    folder = root / record["id"][0].lower()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['id']}.{fmt}"
    text = json.dumps(record) if fmt == "json" else yaml.safe_dump(record)
    path.write_text(text)
    return path
