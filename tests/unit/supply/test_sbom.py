"""supply/sbom.py: syft-shaped CycloneDX fixtures finalised with a lock's hashes and the image id,
then compared with a dpkg status and a venv list; every kind of mismatch is reported."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from supply.sbom import (
    compare,
    components,
    describes,
    dpkg_installed,
    finalize,
    image_id,
    main,
    venv_installed,
)

SHA_NUMPY = "a" * 64
SHA_TORCH = "b" * 64
LOCK = (f"numpy==2.2.6 \\\n    --hash=sha256:{SHA_NUMPY}\n"
        f"torch==2.13.0+cpu \\\n    --hash=sha256:{SHA_TORCH}\n")
DPKG = """Package: libc6
Status: install ok installed
Version: 2.36-9+deb12u10
Source: glibc

Package: python3.11
Status: install ok installed
Version: 3.11.2-6+deb12u6

Package: oldpkg
Status: deinstall ok config-files
Version: 1.0
"""
FREEZE = "numpy==2.2.6\ntorch==2.13.0+cpu\nsecure-trainer==0.1.0\n"


def _comp(kind: str, name: str, version: str, path: str) -> dict[str, Any]:
    return {"type": "library", "name": name, "version": version,
            "purl": f"pkg:{kind}/{'debian/' if kind == 'deb' else ''}{name}@{version}",
            "properties": [{"name": "syft:package:type", "value": "python" if kind == "pypi" else kind},
                           {"name": "syft:location:0:path", "value": path}]}


def syft_bom() -> dict[str, Any]:
    """What syft writes for an image with two debs and three venv distributions."""
    site = "/opt/venv/lib/python3.11/site-packages"
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "metadata": {"component": {}},
            "components": [
                _comp("deb", "libc6", "2.36-9+deb12u10", "/var/lib/dpkg/status"),
                _comp("deb", "python3.11", "3.11.2-6+deb12u6", "/var/lib/dpkg/status"),
                _comp("pypi", "numpy", "2.2.6", f"{site}/numpy-2.2.6.dist-info/METADATA"),
                _comp("pypi", "torch", "2.13.0+cpu", f"{site}/torch-2.13.0+cpu.dist-info/METADATA"),
                _comp("pypi", "secure_trainer", "0.1.0", f"{site}/secure_trainer-0.1.0.dist-info/METADATA"),
                {"type": "file", "name": "/usr/bin/python3.11",
                 "hashes": [{"alg": "SHA-256", "content": "c" * 64}]},
                {"type": "application", "name": "python", "version": "3.11.2",
                 "purl": "pkg:generic/python@3.11.2", "properties": []}]}


@pytest.fixture()
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "lock.txt"
    path.write_text(LOCK)
    return path


def test_finalize_adds_lock_hashes_and_image_id(lock: Path) -> None:
    bom, hashed = finalize(syft_bom(), lock, "sha256:" + "d" * 64)
    assert hashed == 2
    by_name = {c.name: c for c in components(bom)}
    assert by_name["numpy"].sha256 == SHA_NUMPY and by_name["torch"].sha256 == SHA_TORCH
    assert by_name["libc6"].sha256 is None and "/usr/bin/python3.11" not in by_name
    assert image_id(bom) == "sha256:" + "d" * 64


def test_finalize_does_not_hash_a_version_the_lock_does_not_pin(lock: Path) -> None:
    bom = syft_bom()
    bom["components"][2]["version"] = "2.2.5"
    bom, hashed = finalize(bom, lock, "x")
    assert hashed == 1
    dpkg, venv = dpkg_installed(DPKG), venv_installed(FREEZE.splitlines())
    assert compare(components(bom), dpkg, venv) == [
        "pypi numpy: image has 2.2.6, SBOM says 2.2.5", "pypi numpy: no SHA-256 in the SBOM"]


def test_matching_image_has_no_mismatch(lock: Path) -> None:
    bom, _ = finalize(syft_bom(), lock, "x")
    assert dpkg_installed(DPKG) == {"libc6": "2.36-9+deb12u10", "python3.11": "3.11.2-6+deb12u6"}
    assert compare(components(bom), dpkg_installed(DPKG), venv_installed(FREEZE.splitlines())) == []


def test_every_kind_of_mismatch_is_reported(lock: Path) -> None:
    bom, _ = finalize(syft_bom(), lock, "x")
    comps = [c for c in components(bom) if c.name != "python3.11"]  # SBOM leaves a deb out
    dpkg = {**dpkg_installed(DPKG), "libc6": "2.36-9+deb12u11"}  # image was patched since
    venv = {**venv_installed(FREEZE.splitlines()), "pillow": "13.0.0"}  # and gained a wheel
    del venv["numpy"]  # and lost one
    assert compare(comps, dpkg, venv) == [
        "deb libc6: image has 2.36-9+deb12u11, SBOM says 2.36-9+deb12u10",
        "deb python3.11: in the image (3.11.2-6+deb12u6), not in the SBOM",
        "pypi numpy: in the SBOM (2.2.6), not in the image",
        "pypi pillow: in the image (13.0.0), not in the SBOM"]


def test_check_cli_verifies_label_digest_image_id_and_contents(lock: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "syft.json"
    raw.write_text(json.dumps(syft_bom()))
    out = tmp_path / "sbom.cdx.json"
    assert main(["finalize", "--syft", str(raw), "--lock", str(lock), "--image-id", "img1",
                 "--out", str(out)]) == 0
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    status, freeze = tmp_path / "status", tmp_path / "freeze.txt"
    status.write_text(DPKG)
    freeze.write_text(FREEZE)
    args = ["check", "--sbom", str(out), "--dpkg-status", str(status), "--venv-freeze", str(freeze)]
    assert main([*args, "--label-sha256", digest, "--image-id", "img1"]) == 0
    capsys.readouterr()
    assert main([*args, "--label-sha256", "0" * 64, "--image-id", "img1"]) == 1
    assert "MISMATCH label digest" in capsys.readouterr().out
    assert main([*args, "--label-sha256", digest, "--image-id", "img2"]) == 1
    assert "SBOM describes image img1, expected img2" in capsys.readouterr().out
    freeze.write_text(FREEZE + "pillow==13.0.0\n")
    assert main([*args, "--label-sha256", digest]) == 1
    assert "pypi pillow: in the image (13.0.0), not in the SBOM" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert main(["check", "--sbom", str(tmp_path / "bad.json"), "--dpkg-status", str(status),
                 "--venv-freeze", str(freeze)]) == 2


def test_describes_only_the_image_plus_one_layer() -> None:
    assert describes(["l1", "l2"], ["l1", "l2", "sbom"])
    assert not describes(["l1", "l2"], ["l1", "l2", "sbom", "tamper"])
    assert not describes(["l1", "x"], ["l1", "l2", "sbom"])
    assert not describes([], ["sbom"])


def test_check_cli_layers(lock: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw, out = tmp_path / "syft.json", tmp_path / "sbom.cdx.json"
    raw.write_text(json.dumps(syft_bom()))
    main(["finalize", "--syft", str(raw), "--lock", str(lock), "--image-id", "i", "--out", str(out)])
    status, freeze = tmp_path / "status", tmp_path / "freeze.txt"
    status.write_text(DPKG)
    freeze.write_text(FREEZE)
    below, image = tmp_path / "below.json", tmp_path / "image.json"
    below.write_text('["l1"]')
    image.write_text('["l1", "sbom"]')
    args = ["check", "--sbom", str(out), "--dpkg-status", str(status), "--venv-freeze", str(freeze),
            "--layers", str(below), str(image)]
    assert main(args) == 0
    image.write_text('["l1", "extra", "sbom"]')
    assert main(args) == 1
    assert "not the described image plus the SBOM layer" in capsys.readouterr().out
