"""`python -m supply.osv_scan`: match pinned packages against a local OSV directory, offline.

Inputs: a hashed pip lock (PyPI), optionally a dpkg status file (Debian, by source package),
an allow-list of triaged advisories. Exit 0: no untriaged finding; 1: findings or an expired
allow-list entry; 2: unreadable input; 4: no advisory data (the caller reports SKIP).
Must never: reach the network, or report "no finding" for a package it could not evaluate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from supply import allowlist, osv_db
from supply.errors import InputError, SupplyError
from supply.inventory import Package, read_dpkg_status, read_lock
from supply.osv_match import ecosystem_applies, evaluate


@dataclass
class Finding:
    """One advisory affecting one installed package (aliases of one flaw merged)."""

    ecosystem: str
    package: str
    version: str
    id: str
    aliases: list[str]
    fixed: str | None
    undecidable: bool = False
    triaged: str | None = None
    """The allow-list's reason when this finding is triaged (and the entry not expired)."""
    installed_as: list[str] = field(default_factory=list)


def _ids(finding: Finding) -> set[str]:
    return {finding.id, *finding.aliases}


def match(db: osv_db.Database, packages: Sequence[Package]) -> list[Finding]:
    """Every advisory of `db` affecting a package; one finding per flaw and package."""
    findings: list[Finding] = []
    for pkg in packages:
        mine: list[Finding] = []
        for advisory, entry in db.lookup(pkg.ecosystem, pkg.name):
            if not ecosystem_applies(entry.ecosystem, pkg.ecosystem):
                continue
            try:
                verdict = evaluate(pkg.ecosystem, pkg.version, entry)
            except ValueError:
                raise InputError(f"{pkg.name}: pinned version is not valid for "
                                 f"{osv_db.base_ecosystem(pkg.ecosystem)}") from None
            if not verdict.affected:
                continue
            new = Finding(pkg.ecosystem, pkg.name, pkg.version, advisory.id,
                          sorted(advisory.aliases), verdict.fixed, verdict.undecidable,
                          installed_as=list(pkg.installed_as))
            same = next((f for f in mine if _ids(f) & _ids(new)), None)
            if same is None:
                mine.append(new)
            else:  # the PYSEC and GHSA records of one flaw: report once, keep every id
                same.aliases = sorted((_ids(same) | _ids(new)) - {same.id})
                same.fixed = same.fixed or new.fixed
        findings.extend(mine)
    return findings


def triage(findings: list[Finding], entries: list[allowlist.Allowed], today: dt.date) -> None:
    """Mark findings covered by a live allow-list entry (expired entries cover nothing)."""
    live = [e for e in entries if e.expires >= today]
    for finding in findings:
        for entry in live:
            if allowlist.covers(entry, finding.ecosystem, finding.package, _ids(finding)):
                finding.triaged = f"{entry.reason} (until {entry.expires.isoformat()})"
                break


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m supply.osv_scan", description=__doc__.split("\n")[0])
    p.add_argument("--osv-dir", type=Path, required=True, help="local OSV advisory directory")
    p.add_argument("--lock", type=Path, action="append", default=[], help="hashed pip lock")
    p.add_argument("--dpkg-status", type=Path, help="an image's /var/lib/dpkg/status")
    p.add_argument("--debian-release", help="VERSION_ID of the image's Debian (e.g. 12)")
    p.add_argument("--allow", type=Path, help="allow-list of triaged advisories (TOML)")
    p.add_argument("--today", type=dt.date.fromisoformat, default=dt.date.today(),
                   help="date the allow-list expiries are checked against (YYYY-MM-DD)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    return p


def _line(f: Finding) -> str:
    fix = ("fixed: unknown (advisory range unreadable)" if f.undecidable
           else f"fixed in {f.fixed}" if f.fixed else "no fixed version")
    aliases = f" ({', '.join(f.aliases)})" if f.aliases else ""
    where = f" [{', '.join(f.installed_as)}]" if f.installed_as else ""
    return f"{f.id} {f.package} {f.version}{where}: {fix}{aliases}"


def run(args: argparse.Namespace) -> int:
    """The scan; returns the exit code (raises SupplyError for 2 and 4)."""
    if args.dpkg_status and not args.debian_release:
        raise InputError("--dpkg-status needs --debian-release")
    packages: list[Package] = []
    for lock in args.lock:
        packages += read_lock(lock)
    # The lock and the image's venv list mostly the same pins: check each one once.
    unique = {(osv_db.normalize_name("PyPI", p.name), p.version): p for p in packages}
    packages = list(unique.values())
    debian = read_dpkg_status(args.dpkg_status, args.debian_release) if args.dpkg_status else []
    entries = allowlist.load(args.allow) if args.allow else []
    db = osv_db.load(args.osv_dir)
    findings = match(db, packages + debian)
    triage(findings, entries, args.today)
    stale = allowlist.expired(entries, args.today)
    open_ = [f for f in findings if not f.triaged]
    print(f"osv: database with {db.advisories} advisories ({db.withdrawn} withdrawn), "
          f"newest modified {db.newest_modified[:10] or 'unknown'}")
    print(f"osv: checked {len(packages)} PyPI packages and {len(debian)} Debian source packages")
    for f in open_:
        print(f"FINDING {_line(f)}")
    for f in findings:
        if f.triaged:
            print(f"TRIAGED {_line(f)} -- {f.triaged}")
    for e in stale:
        print(f"EXPIRED allow-list entry {e.id} for {e.package} expired {e.expires.isoformat()}")
    print(f"osv: {len(open_)} untriaged finding(s), {len(findings) - len(open_)} triaged, "
          f"{len(stale)} expired allow-list entr(ies)")
    if args.json:
        args.json.write_text(json.dumps({
            "database": {"advisories": db.advisories, "withdrawn": db.withdrawn,
                         "newest_modified": db.newest_modified},
            "checked": {"pypi": len(packages), "debian_sources": len(debian)},
            "findings": [asdict(f) for f in findings],
            "expired_allow_entries": [{"id": e.id, "package": e.package,
                                       "expires": e.expires.isoformat()} for e in stale],
        }, indent=2) + "\n")
    return 1 if open_ or stale else 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry; one-line error on stderr for exit codes 2 and 4."""
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except SupplyError as exc:
        print(f"osv: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
