"""scripts/seccomp_profile.py: policies/seccomp.json is derived from Docker's data, correctly."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess  # nosec B404 - fixed argv
import sys
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.unit.scripts.loader import load_script

sp = load_script("seccomp_profile")


def _allowed(profile: dict[str, Any]) -> set[str]:
    return {n for e in profile["syscalls"] if e["action"] == "SCMP_ACT_ALLOW" for n in e["names"]}


@pytest.fixture(scope="module")
def upstream() -> dict[str, Any]:
    return json.loads(sp.UPSTREAM.read_text())


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return json.loads(sp.OUT.read_text())


def test_checked_in_profile_is_current() -> None:
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/seccomp_profile.py"),
                             "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_upstream_data_matches_its_recorded_provenance() -> None:
    assert hashlib.sha256(sp.UPSTREAM.read_bytes()).hexdigest() == sp.recorded_sha256()
    readme = sp.PROVENANCE.read_text()
    assert "moby/moby" in readme and "b985e2313a8676e18072b442911fc8f64f17d440" in readme


def test_capability_gated_calls_we_do_not_grant_are_refused(ours: dict[str, Any]) -> None:
    allowed = _allowed(ours)
    # CAP_SYS_PTRACE (pidfd_getfd drifted into the hand-written list), SYS_BOOT, SYS_MODULE,
    # SYS_TIME, DAC_READ_SEARCH, and everything CAP_SYS_ADMIN unlocks but mount/umount*.
    for name in ("pidfd_getfd", "kcmp", "process_madvise", "reboot", "init_module",
                 "clock_settime", "open_by_handle_at", "unshare", "setns", "bpf", "fsopen",
                 "move_mount", "sethostname", "perf_event_open", "chroot"):
        assert name not in allowed, name
    assert not allowed & {"ptrace", "process_vm_readv", "process_vm_writev"}  # narrowed
    assert {"mount", "umount2", "umount"} <= allowed


def test_no_capability_condition_is_left(ours: dict[str, Any]) -> None:
    """Docker would re-evaluate a caps condition against --cap-add SYS_ADMIN at run time."""
    for entry in ours["syscalls"]:
        for key in ("includes", "excludes"):
            assert "caps" not in entry.get(key, {}), entry["names"]


def test_namespace_free_clone_and_clone3_enosys_apply(ours: dict[str, Any]) -> None:
    clone = [e for e in ours["syscalls"] if e["names"] == ["clone"] and "includes" not in e]
    assert clone and clone[0]["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    assert clone[0]["excludes"] == {"arches": ["s390", "s390x"]}  # the s390 form stays separate
    clone3 = [e for e in ours["syscalls"] if e["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]


def test_nothing_beyond_upstream_but_the_mount_calls(
        upstream: dict[str, Any], ours: dict[str, Any]) -> None:
    ungated = {n for e in upstream["syscalls"] if e["action"] == "SCMP_ACT_ALLOW"
               and not (e.get("includes") or {}).get("caps") for n in e["names"]}
    assert _allowed(ours) - ungated == {"mount", "umount", "umount2"}
    assert ours["defaultAction"] == upstream["defaultAction"] == "SCMP_ACT_ERRNO"
    assert ours["archMap"] == upstream["archMap"]


def test_derivation_follows_the_data(upstream: dict[str, Any]) -> None:
    """A change in the upstream data changes our profile (the list is not typed in the code)."""
    changed = copy.deepcopy(upstream)
    changed["syscalls"][0]["names"].append("new_syscall_2027")
    changed["syscalls"].append({"names": ["gated_call"], "action": "SCMP_ACT_ALLOW",
                                "includes": {"caps": ["CAP_SYS_PTRACE"]}})
    changed["syscalls"].append({"names": ["granted_call"], "action": "SCMP_ACT_ALLOW",
                                "includes": {"caps": ["CAP_CHOWN"]}})
    allowed = _allowed(sp.derive(changed))
    assert "new_syscall_2027" in allowed and "granted_call" in allowed
    assert "gated_call" not in allowed


def test_missing_upstream_mount_entry_is_refused(upstream: dict[str, Any]) -> None:
    changed = copy.deepcopy(upstream)
    for entry in changed["syscalls"]:
        entry["names"] = [n for n in entry["names"] if n != "umount2"]
    with pytest.raises(SystemExit):
        sp.derive(changed)
