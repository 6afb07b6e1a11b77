"""The CPU image, run by a real docker engine: lifecycle, denials, kernel audit, no plaintext left.

Every test drives `docker run` of the image built from this tree (see conftest.py). The Vault is
a dev OpenBao on the host loopback; the cipher dir is a bind-mounted volume and is opened on the
host afterwards to check what the container sealed inside it.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

from tests.container.support import (
    SECCOMP,
    TRAIN_ARGS,
    ContainerCase,
    ContainerResult,
    all_caps_flags,
    docker,
    run_container,
)
from tests.integration.leakprobe import LeakProbe, Needle, scan_tree, standard_roots

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.root]

STEPS = "3"
# Paths the kernel-audit template renders inside the container (ST_MOUNTPOINT, ST_CIPHER_DIR).
CONTAINER_PATHS = ("/workspace", "/cipher")


def _events(case: ContainerCase, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, fields) of one run, in order, from the app audit log inside the workspace."""
    with case.run.opened() as ws:
        lines = (ws.audit_dir / "app.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [(r["event"], r["fields"]) for r in records if r["fields"].get("run_id") == run_id]


def _scan_bytes(data: bytes, needles: list[Needle]) -> list[str]:
    return [n.label for n in needles if n.data in data]


def _layer_changes(name: str) -> list[str]:
    """`docker diff` of a container: added/changed paths, minus bind-mount targets and parents.

    Docker itself creates the targets of `-v` mounts (and touches their parent dirs) in the
    container layer; what they hold lives on the host and is checked there.
    """
    info = json.loads(docker("inspect", name).stdout)[0]
    targets = {m["Destination"] for m in info.get("Mounts") or []}
    skip = {str(p) for t in targets for p in (Path(t), *Path(t).parents)}
    return [path for line in docker("diff", name).stdout.decode().splitlines()
            if line[:1] in ("A", "C") and (path := line.split(" ", 1)[1]) not in skip]


def _layer_hits(name: str, needles: list[Needle]) -> tuple[list[str], list[str]]:
    """The container layer's added/changed files, and needle hits in their bytes."""
    changed = _layer_changes(name)
    hits: list[str] = []
    for path in changed:
        blob = docker("cp", f"{name}:{path}", "-", check=False, timeout=300).stdout
        if not blob:
            continue
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            for member in tar.getmembers():
                fh = tar.extractfile(member) if member.isfile() else None
                if fh is not None:
                    hits += [f"{path}: {label}" for label in _scan_bytes(fh.read(), needles)]
    return changed, hits


@pytest.fixture(scope="module")
def lifecycle_run(image: str, container_case: ContainerCase) -> Iterator[ContainerResult]:
    """One production-flag run (read-only rootfs, /tmp tmpfs), watched by a host leak probe."""
    case = container_case
    probe = LeakProbe(standard_roots(Path("/var/lib/docker")), case.needles,
                      exclude=[case.dataset, case.run.cipher])
    probe.start()
    result = run_container(image, case.flags(), ["run", "--policy", "dev", *TRAIN_ARGS,
                                                 "--max_train_steps", STEPS], keep=True)
    result.probe = probe.finish()
    try:
        yield result
    finally:
        docker("rm", "-f", result.name, check=False)


def test_full_lifecycle_seals_a_lora_in_the_encrypted_store(
        lifecycle_run: ContainerResult, container_case: ContainerCase) -> None:
    """The image trains on the tiny model and leaves a Kohya LoRA only inside the cipher dir."""
    assert lifecycle_run.rc == 0, (lifecycle_run.stdout + lifecycle_run.stderr)[-4000:]
    out = lifecycle_run.stdout
    for phase in ("[policy]", "[vault]", "[workspace]", "[train]", "[seal]"):
        assert phase in out
    run_id = out.split("done: run ", 1)[1].split(";", 1)[0]
    with container_case.run.opened() as ws:
        lora = ws.runs_dir / run_id / "lora.safetensors"
        assert lora.is_file()
        with safe_open(str(lora), framework="pt") as fh:
            keys = list(fh.keys())
        assert any(k.startswith("lora_unet_") and k.endswith(".lora_down.weight") for k in keys)
        manifest = json.loads((ws.runs_dir / run_id / "manifest.json").read_text())
        assert manifest["run_id"] == run_id
        assert not list(ws.mountpoint.joinpath("tmp").iterdir()), "run tmp not wiped"
    events = _events(container_case, run_id)
    names = [name for name, _ in events]
    # Teardown records come last: the wipe, then the revocation of the run's read grants.
    assert names[0] == "policy" and "sealed" in names, names
    assert names[names.index("sealed") + 1:] == ["teardown", "access_revoked"], names
    assert dict(events)["train_start"]["uid"] == 10001


def test_read_only_rootfs_with_tmpfs_tmp(lifecycle_run: ContainerResult) -> None:
    """The run above had a read-only root and /tmp as noexec tmpfs, and wrote nothing to the layer."""
    assert lifecycle_run.rc == 0, (lifecycle_run.stdout + lifecycle_run.stderr)[-4000:]
    info = json.loads(docker("inspect", lifecycle_run.name).stdout)[0]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert "noexec" in info["HostConfig"]["Tmpfs"]["/tmp"]
    assert info["Config"]["User"] == "0:0"
    assert _layer_changes(lifecycle_run.name) == []


def test_no_plaintext_on_the_host_after_the_run(
        lifecycle_run: ContainerResult, container_case: ContainerCase) -> None:
    """Cipher dir raw bytes, host tmp dirs, docker's state (logs, layers) and output: no data."""
    assert lifecycle_run.rc == 0, (lifecycle_run.stdout + lifecycle_run.stderr)[-4000:]
    needles = container_case.needles
    assert needles
    cipher = scan_tree(container_case.run.cipher, needles)
    assert cipher.scanned > 0 and cipher.hits == []
    probe = lifecycle_run.probe
    assert probe is not None and probe.changed > 0
    assert probe.hits == [], [f"{h.path}: {h.label}" for h in probe.hits]
    assert _scan_bytes((lifecycle_run.stdout + lifecycle_run.stderr).encode(), needles) == []
    logs = docker("logs", lifecycle_run.name)
    assert _scan_bytes(logs.stdout + logs.stderr, needles) == []
    changed, hits = _layer_hits(lifecycle_run.name, needles)
    assert changed == [] and hits == []


def test_root_with_all_capabilities_is_denied_under_strict(
        image: str, container_case: ContainerCase) -> None:
    """Every capability, as uid 0, under the strict profile stops at the policy: exit 3."""
    # The policy runs before any Vault call: Vault is configured, never reached (no network).
    result = run_container(image, [*all_caps_flags(), "--user", "0:0", "--network", "none",
                                   *container_case.vault_flags()],
                           ["run", "--policy", "strict", *TRAIN_ARGS, "--max_train_steps", "1"])
    assert result.rc == 3, result.stderr[-2000:]
    assert "error[policy]" in result.stderr
    assert "capability bounding set" in result.stderr


def test_missing_dev_fuse_exits_5_with_one_line(image: str, container_case: ContainerCase) -> None:
    """Without --device /dev/fuse the mount fails: exit 5 and a single clear error line."""
    result = run_container(image, container_case.flags(fuse=False),
                           ["run", "--policy", "dev", *TRAIN_ARGS, "--max_train_steps", "1"])
    assert result.rc == 5, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error[")]
    assert len(errors) == 1 and errors[0].startswith("error[workspace]:"), result.stderr
    assert "/dev/fuse" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout


def _our_rules() -> list[str]:
    """Host `auditctl -l` lines with our key that name the container's paths."""
    out = subprocess.run(["auditctl", "-l"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return [line for line in out.splitlines()
            if "secure-trainer" in line and any(p in line for p in CONTAINER_PATHS)]


def test_kernel_audit_mode_loads_and_removes_its_rules(
        image: str, container_case: ContainerCase) -> None:
    """ST_AUDIT_MODE=kernel with --pid=host: rules appear on the host during the run, none after.

    Runs with a writable root (no --read-only) so docker's container layer is checked too.
    """
    assert _our_rules() == [], "rules of an earlier run are still loaded"
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and not seen:
            seen.extend(_our_rules())
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    flags = container_case.flags(read_only=False) + [
        "--pid=host", "--cap-add", "AUDIT_CONTROL", "--cap-add", "AUDIT_READ",
        "-e", "ST_AUDIT_MODE=kernel"]
    result = run_container(image, flags, ["run", "--policy", "dev", *TRAIN_ARGS,
                                          "--max_train_steps", "1"], keep=True)
    try:
        stop.set()
        watcher.join(timeout=10)
        assert result.rc == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert seen, "no secure-trainer rule was ever listed on the host during the run"
        assert _our_rules() == []
        run_id = result.stdout.split("done: run ", 1)[1].split(";", 1)[0]
        events = dict(_events(container_case, run_id))
        loaded = events["audit_rules_loaded"]["count"]
        assert loaded > 0 and events["audit_rules_removed"]["count"] == loaded, events
        _changed, hits = _layer_hits(result.name, container_case.needles)
        assert hits == [], hits
    finally:
        docker("rm", "-f", result.name, check=False)


_SYSCALL_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs("/tmp/m", exist_ok=True)
rc = libc.mount(b"none", b"/tmp/m", b"tmpfs", 0, None)
print("mount", rc, ctypes.get_errno())
rc = libc.umount2(b"/tmp/m", 0)
print("umount2", rc, ctypes.get_errno())
rc = libc.unshare(0x00020000)  # CLONE_NEWNS
print("unshare", rc, ctypes.get_errno())
"""


@pytest.mark.parametrize("profile", ["ours", "docker-default"])
def test_seccomp_profile_allows_mount_but_not_namespaces(image: str, profile: str) -> None:
    """With SYS_ADMIN, policies/seccomp.json lets mount/umount2 through and refuses unshare
    (EPERM); Docker's default profile, for contrast, would allow both once SYS_ADMIN is given."""
    flags = ["--user", "0:0", "--cap-drop", "ALL", "--cap-add", "SYS_ADMIN", "--network", "none",
             "--tmpfs", "/tmp:rw,nosuid", "--entrypoint", "python"]
    if profile == "ours":
        flags += ["--security-opt", f"seccomp={SECCOMP}"]
    result = run_container(image, flags, ["-c", _SYSCALL_PROBE])
    assert result.rc == 0, result.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["mount"] == "0 0" and lines["umount2"] == "0 0", result.stdout
    if profile == "ours":
        assert lines["unshare"] == "-1 1", result.stdout  # EPERM from the filter
    else:
        assert lines["unshare"] == "0 0", result.stdout
