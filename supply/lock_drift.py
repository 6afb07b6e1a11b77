"""Drift between an installed environment and a hashed lock: `python -m supply.lock_drift`.

The dev venv, CI and the image must resolve the same versions (`make install` installs with the
lock as constraints). Must never: treat a locked package that is missing from the environment as
fine (only the build backend, which the image uses in its builder stage, may be absent), or
compare names without PEP 503 normalisation.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from supply.errors import SupplyError
from supply.inventory import read_lock
from supply.osv_db import normalize_name

# coupling: scripts/lock.py BUILD_REQUIREMENTS: locked for the image's builder stage only; a venv
# made by `python -m venv` carries its own setuptools and no wheel.
BUILD_ONLY = frozenset({"setuptools", "wheel"})


def installed(paths: Sequence[str] | None = None) -> dict[str, str]:
    """{normalised name: version} of the distributions on `paths` (default: sys.path)."""
    dists = md.distributions(path=list(paths)) if paths is not None else md.distributions()
    return {normalize_name("PyPI", d.metadata["Name"]): d.version for d in dists}


def drift(lock: Path, env: Mapping[str, str]) -> list[str]:
    """One line per locked package the environment lacks or has at another version."""
    problems = []
    for pkg in read_lock(lock):
        name = normalize_name("PyPI", pkg.name)
        if name in BUILD_ONLY:
            continue
        have = env.get(name)
        if have is None:
            problems.append(f"{name}: locked {pkg.version}, not installed")
        elif Version(have) != Version(pkg.version):
            problems.append(f"{name}: locked {pkg.version}, installed {have}")
    return problems


def unlocked(lock: Path, dependencies: Iterable[str]) -> list[str]:
    """pyproject dependencies the lock does not satisfy (pyproject changed, lock not regenerated).

    A local label (torch 2.13.0+cpu) satisfies `==2.13.0`, as PEP 440 says for a spec without one.
    """
    pins = {normalize_name("PyPI", p.name): p.version for p in read_lock(lock)}
    problems = []
    for text in dependencies:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = pins.get(normalize_name("PyPI", req.name))
        if version is None:
            problems.append(f"{req.name}: declared in pyproject, not in the lock")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}: lock has {version}, pyproject wants {req.specifier}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when this interpreter's environment and pyproject agree with the lock, else 1."""
    parser = argparse.ArgumentParser(prog="python -m supply.lock_drift",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--lock", type=Path, default=Path("requirements/lock-cpu.txt"))
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    try:
        deps = tomllib.loads(args.pyproject.read_text())["project"]["dependencies"]
        problems = drift(args.lock, installed()) + unlocked(args.lock, deps)
    except (OSError, KeyError, tomllib.TOMLDecodeError, SupplyError) as exc:
        print(f"lock-drift: cannot check ({type(exc).__name__})", file=sys.stderr)
        return 2
    for line in problems:
        print(f"DRIFT {line}")
    if problems:
        print(f"lock-drift: {len(problems)} difference(s) from {args.lock}; run `make install` "
              "(or regenerate the lock with scripts/lock.py)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
