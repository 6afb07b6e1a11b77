"""The image's CycloneDX SBOM: finish syft's output and check it against what the image holds.

`finalize` takes syft's CycloneDX JSON of an image (scripts/sbom.sh, from a `docker save`
archive), adds the wheel sha256 of every Python component from the hashed lock (the bytes pip
verified with --require-hashes), and records which image it describes (its id) in the metadata.
`check` compares an SBOM with the image: every installed dpkg package and every distribution of
/opt/venv must be a component with the same version, and no deb or venv component may be absent
from the image. Must never: accept an SBOM that leaves out or invents a package, or read a
component's version from anywhere but the SBOM itself.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supply.errors import InputError, SupplyError
from supply.inventory import read_lock

VENV = "/opt/venv/"
IMAGE_PROPERTY = "secure-trainer:image-id"
"""Metadata property naming the image (docker image id) the SBOM was generated from."""
LOCK_PROPERTY = "secure-trainer:lock-sha256"
_GONE = {"not-installed", "config-files"}


def pep503(name: str) -> str:
    """PyPI's normalised name (PEP 503): `Typing_Extensions` and `typing-extensions` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Component:
    """One package component of the SBOM (file components are not packages and are skipped)."""

    kind: str
    """The purl type: 'deb', 'pypi', 'binary', ..."""
    name: str
    version: str
    paths: tuple[str, ...]
    """Where syft found it (syft:location:N:path properties)."""
    sha256: str | None


def _purl_type(purl: str) -> str:
    return purl[4:].split("/", 1)[0] if purl.startswith("pkg:") else ""


def components(bom: dict[str, Any]) -> list[Component]:
    """The package components of a CycloneDX document."""
    raw = bom.get("components")
    if not isinstance(raw, list):
        raise InputError("sbom: no components list")
    out = []
    for item in raw:
        if not isinstance(item, dict) or item.get("type") == "file":
            continue
        purl = str(item.get("purl", ""))
        props = {str(p.get("name")): str(p.get("value")) for p in item.get("properties", [])
                 if isinstance(p, dict)}
        paths = tuple(v for k, v in sorted(props.items())
                      if k.startswith("syft:location:") and k.endswith(":path"))
        sha = next((str(h.get("content")) for h in item.get("hashes", [])
                    if isinstance(h, dict) and h.get("alg") == "SHA-256"), None)
        kind = _purl_type(purl) or str(props.get("syft:package:type", "unknown"))
        out.append(Component(kind, str(item.get("name", "")), str(item.get("version", "")),
                             paths, sha))
    return out


def load(path: Path) -> dict[str, Any]:
    """A CycloneDX JSON document from a file."""
    try:
        bom = json.loads(path.read_bytes())
    except (OSError, ValueError):
        raise InputError(f"sbom {path.name}: unreadable or not JSON") from None
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
        raise InputError(f"sbom {path.name}: not a CycloneDX document")
    return bom


def finalize(bom: dict[str, Any], lock: Path, image_id: str) -> tuple[dict[str, Any], int]:
    """Add the lock's wheel sha256 to the venv's PyPI components and the image id to the
    metadata. Returns the document and how many components got a hash. A venv component whose
    version differs from the lock gets no hash (`check` reports it)."""
    pins: dict[str, tuple[str, str]] = {}
    text = lock.read_text(encoding="utf-8")
    hashes = dict(re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*==\S+) \\\n\s+--hash=sha256:([0-9a-f]{64})",
                             text, flags=re.MULTILINE))
    for package in read_lock(lock):
        digest = hashes.get(f"{package.name}=={package.version}")
        if digest:
            pins[pep503(package.name)] = (package.version, digest)
    hashed = 0
    for item in bom.get("components", []):
        if not isinstance(item, dict) or _purl_type(str(item.get("purl", ""))) != "pypi":
            continue
        pin = pins.get(pep503(str(item.get("name", ""))))
        if pin and pin[0] == item.get("version"):
            item["hashes"] = [h for h in item.get("hashes", []) if h.get("alg") != "SHA-256"]
            item["hashes"].append({"alg": "SHA-256", "content": pin[1]})
            hashed += 1
    meta = bom.setdefault("metadata", {})
    props = [p for p in meta.get("properties", [])
             if p.get("name") not in (IMAGE_PROPERTY, LOCK_PROPERTY)]
    props += [{"name": IMAGE_PROPERTY, "value": image_id},
              {"name": LOCK_PROPERTY, "value": hashlib.sha256(text.encode()).hexdigest()}]
    meta["properties"] = props
    return bom, hashed


def image_id(bom: dict[str, Any]) -> str | None:
    """The image id `finalize` recorded, if any."""
    for prop in bom.get("metadata", {}).get("properties", []):
        if isinstance(prop, dict) and prop.get("name") == IMAGE_PROPERTY:
            return str(prop.get("value"))
    return None


def describes(described_layers: list[str], image_layers: list[str]) -> bool:
    """True when the image is the described image plus exactly one layer (the SBOM file's)."""
    return bool(described_layers) and image_layers[:-1] == described_layers \
        and len(image_layers) == len(described_layers) + 1


def dpkg_installed(status_text: str) -> dict[str, str]:
    """Installed binary packages of a dpkg status file: name -> version."""
    out: dict[str, str] = {}
    for para in status_text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in para.splitlines()
                      if line and not line[0].isspace() and ":" in line)
        name = fields.get("Package", "").strip()
        if not name:
            continue
        state = fields.get("Status", "").split()
        if state and state[-1] in _GONE:
            continue
        out[name] = fields.get("Version", "").strip()
    return out


def venv_installed(lines: Iterable[str]) -> dict[str, str]:
    """`name==version` lines (the image venv's distributions) -> {pep503 name: version}."""
    out = {}
    for line in lines:
        name, sep, version = line.strip().partition("==")
        if sep:
            out[pep503(name)] = version
    return out


def _diff(what: str, sbom: dict[str, set[str]], image: dict[str, str]) -> list[str]:
    problems = []
    for name in sorted(set(sbom) | set(image)):
        have, want = sbom.get(name, set()), image.get(name)
        if want is None:
            problems.append(f"{what} {name}: in the SBOM ({', '.join(sorted(have))}), "
                            "not in the image")
        elif not have:
            problems.append(f"{what} {name}: in the image ({want}), not in the SBOM")
        elif have != {want}:
            problems.append(f"{what} {name}: image has {want}, SBOM says "
                            f"{', '.join(sorted(have))}")
    return problems


def compare(comps: list[Component], dpkg: dict[str, str], venv: dict[str, str],
            require_hashes: bool = True) -> list[str]:
    """Every mismatch between the SBOM's deb/venv components and the image (empty: they agree).
    With `require_hashes`, a venv component without a SHA-256 is a mismatch too."""
    debs: dict[str, set[str]] = {}
    pys: dict[str, set[str]] = {}
    problems = []
    for comp in comps:
        if comp.kind == "deb":
            debs.setdefault(comp.name, set()).add(comp.version)
        elif comp.kind == "pypi" and any(p.startswith(VENV) for p in comp.paths):
            pys.setdefault(pep503(comp.name), set()).add(comp.version)
            if require_hashes and not comp.sha256 and pep503(comp.name) != "secure-trainer":
                problems.append(f"pypi {pep503(comp.name)}: no SHA-256 in the SBOM")
    return _diff("deb", debs, dpkg) + _diff("pypi", pys, venv) + problems


def counts(comps: list[Component]) -> dict[str, int]:
    """Components per purl type."""
    out: dict[str, int] = {}
    for comp in comps:
        out[comp.kind] = out.get(comp.kind, 0) + 1
    return dict(sorted(out.items()))


def _finalize_cmd(args: argparse.Namespace) -> int:
    bom, hashed = finalize(load(args.syft), args.lock, args.image_id)
    # Sorted keys, fixed separators: the same input gives the same bytes (and label digest).
    args.out.write_text(json.dumps(bom, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    summary = ", ".join(f"{k} {v}" for k, v in counts(components(bom)).items())
    print(f"sbom: {summary}; {hashed} Python components hashed from the lock")
    return 0


def _check_cmd(args: argparse.Namespace) -> int:
    data = args.sbom.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    problems = []
    if args.label_sha256 is not None and args.label_sha256 != digest:
        problems.append(f"label digest {args.label_sha256[:16]}... != file {digest[:16]}...")
    bom = load(args.sbom)
    if args.image_id is not None and image_id(bom) != args.image_id:
        problems.append(f"SBOM describes image {image_id(bom)}, expected {args.image_id}")
    if args.layers is not None:
        try:
            described, image = (json.loads(Path(f).read_text()) for f in args.layers)
        except (OSError, ValueError):
            raise InputError("sbom check: layer lists unreadable") from None
        if not describes(described, image):
            problems.append("the image is not the described image plus the SBOM layer")
    comps = components(bom)
    try:
        dpkg = dpkg_installed(args.dpkg_status.read_text(encoding="utf-8", errors="replace"))
        venv = venv_installed(args.venv_freeze.read_text(encoding="utf-8").splitlines())
    except OSError:
        raise InputError("sbom check: dpkg status or venv list unreadable") from None
    problems += compare(comps, dpkg, venv)
    for line in problems:
        print(f"MISMATCH {line}")
    summary = ", ".join(f"{k} {v}" for k, v in counts(comps).items())
    print(f"sbom {digest[:12]}: {summary}; image: {len(dpkg)} deb, {len(venv)} venv; "
          f"{len(problems)} mismatch(es)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    """`finalize` or `check`; exit 0 ok, 1 mismatch, 2 unusable input."""
    parser = argparse.ArgumentParser(prog="python -m supply.sbom", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    fin = sub.add_parser("finalize", help="add lock hashes and the image id to syft's SBOM")
    fin.add_argument("--syft", type=Path, required=True)
    fin.add_argument("--lock", type=Path, required=True)
    fin.add_argument("--image-id", required=True)
    fin.add_argument("--out", type=Path, required=True)
    chk = sub.add_parser("check", help="compare an SBOM with the image's dpkg status and venv")
    chk.add_argument("--sbom", type=Path, required=True)
    chk.add_argument("--label-sha256")
    chk.add_argument("--image-id")
    chk.add_argument("--layers", nargs=2, metavar=("DESCRIBED_JSON", "IMAGE_JSON"),
                     help="RootFS.Layers of the described image and of the scanned image")
    chk.add_argument("--dpkg-status", type=Path, required=True)
    chk.add_argument("--venv-freeze", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        return _finalize_cmd(args) if args.cmd == "finalize" else _check_cmd(args)
    except SupplyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
