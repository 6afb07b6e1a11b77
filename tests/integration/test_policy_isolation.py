"""Positive/negative pairs the host cannot give: a netns, a tmpfs /tmp, a gocryptfs mount.

A network namespace created by the test (only lo, then a veth pair) and a private mount
namespace with a noexec tmpfs over /tmp; the CLI runs inside each as a real process. The
egress canary is 127.0.0.1 only: reachable from the host, unreachable from inside the netns.
A real gocryptfs workspace (passphrase through stdin) gives the post-mount workspace facts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.policy import PolicyContext, load_profile
from entrypoint.policy.engine import evaluate
from entrypoint.policy.gatherers import gather_facts

pytestmark = [pytest.mark.integration, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "secure-trainer")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture()
def netns() -> Iterator[str]:
    """A fresh network namespace with lo up; deleted afterwards."""
    name = f"st-policy-{os.getpid()}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)


@pytest.fixture()
def loopback_listener() -> Iterator[int]:
    """A TCP listener on the host's 127.0.0.1; yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def check_json(prefix: list[str], *args: str) -> dict[str, Any]:
    """Run `policy check --policy strict --json ARGS` under `prefix`; the decision record."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "ST_"))}
    done = subprocess.run([*prefix, CLI, "policy", "check", "--policy", "strict", "--json",
                           *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode in (0, 3), done.stderr
    return json.loads(done.stdout)


def result(record: dict[str, Any], rule_id: str) -> dict[str, Any]:
    """The rule result entry for `rule_id`."""
    return next(r for r in record["rules"] if r["id"] == rule_id)


def test_netns_interfaces_and_canary(netns: str, loopback_listener: int) -> None:
    """Only lo ⇒ no_interfaces passes and the host canary is unreachable; a veth ⇒ denied."""
    canary = f"127.0.0.1:{loopback_listener}"
    host = check_json([], "--canary", canary)
    assert host["facts"]["network"]["canary_reachable"] is True
    assert result(host, "network.canary_blocked")["result"] == "fail"

    inside = check_json(["ip", "netns", "exec", netns], "--canary", canary)
    assert inside["facts"]["network"]["interfaces"] == []
    assert inside["facts"]["network"]["default_route"] is False
    assert inside["facts"]["network"]["canary_reachable"] is False
    assert result(inside, "network.no_interfaces")["result"] == "pass"
    assert result(inside, "network.canary_blocked")["result"] == "pass"

    _ip("-n", netns, "link", "add", "stveth0", "type", "veth", "peer", "name", "stveth1")
    with_veth = check_json(["ip", "netns", "exec", netns])
    assert with_veth["facts"]["network"]["interfaces"] == ["stveth0", "stveth1"]
    rule = result(with_veth, "network.no_interfaces")
    assert rule["result"] == "fail" and rule["action"] == "deny"
    assert "present (stveth0, stveth1)" in rule["reason"]


# A checkout that itself lives under /tmp (CI clones may) is bind-mounted back on top of the
# new tmpfs, so the CLI stays reachable inside the namespace.
_MOUNT_TMPFS_THEN_EXEC = """
import os, subprocess, sys, tempfile
repo = sys.argv[1]
sh = lambda *a: subprocess.run(list(a), check=True, timeout=30)
stash = None
if repo == "/tmp" or repo.startswith("/tmp/"):
    os.makedirs("/run", exist_ok=True)
    stash = tempfile.mkdtemp(prefix="st-stash-", dir="/run")
    sh("mount", "--bind", repo, stash)
sh("mount", "-t", "tmpfs", "-o", "noexec,nosuid,nodev,size=8m", "tmpfs", "/tmp")
if stash:
    os.makedirs(repo, exist_ok=True)
    sh("mount", "--bind", stash, repo)
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_tmpfs_tmp_in_a_private_mount_namespace() -> None:
    """/tmp on disk fails fs.tmp_tmpfs; a noexec tmpfs over /tmp (private mount ns) passes."""
    host = check_json([])
    assert result(host, "fs.tmp_tmpfs")["result"] == "fail"
    prefix = ["unshare", "--mount", "--propagation", "private", "--",
              sys.executable, "-c", _MOUNT_TMPFS_THEN_EXEC, str(REPO)]
    stashes = set(Path("/run").glob("st-stash-*"))
    try:
        inside = check_json(prefix)
    finally:
        for leftover in set(Path("/run").glob("st-stash-*")) - stashes:
            leftover.rmdir()  # empty on the host: the bind lived in the child's namespace
    assert inside["facts"]["fs"]["tmp_fstype"] == "tmpfs"
    assert result(inside, "fs.tmp_tmpfs")["result"] == "pass"
    assert result(inside, "fs.tmp_noexec")["result"] == "pass"
    after = check_json([])  # the mount stayed private to the child's namespace
    assert after["facts"]["fs"]["tmp_fstype"] == host["facts"]["fs"]["tmp_fstype"] != "tmpfs"


def _gocryptfs(args: list[str], passphrase: bytes) -> None:
    # SECURITY: the passphrase goes through stdin, never argv or a file
    subprocess.run(["gocryptfs", "-q", *args], input=passphrase + b"\n", check=True,
                   capture_output=True, timeout=60)


def test_gocryptfs_workspace_post_mount(tmp_path: Path) -> None:
    """A mounted gocryptfs workspace passes fs.workspace_gocryptfs post-mount; a tmpfs at the
    same mountpoint (a plaintext mount) fails it."""
    cipher, mnt = tmp_path / "cipher", tmp_path / "ws"
    cipher.mkdir(mode=0o700)
    mnt.mkdir()
    _gocryptfs(["-init", str(cipher)], b"policy-test-passphrase")
    strict = load_profile("strict")
    ctx = PolicyContext(profile=strict, workspace_dir=mnt, cipher_dir=cipher)
    _gocryptfs([str(cipher), str(mnt)], b"policy-test-passphrase")
    try:
        facts = gather_facts(["fs"], ctx)
        assert facts.fs is not None
        assert (facts.fs.workspace_mounted, facts.fs.workspace_fstype) == (True, "fuse.gocryptfs")
        assert "nosuid" in facts.fs.workspace_options and facts.fs.cipher_dir_initialized
        decision = evaluate(strict, facts, phase="post-mount")
        assert next(r for r in decision.results if r.id == "fs.workspace_gocryptfs").result \
            == "pass"
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, timeout=30,
                       check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True,
                   timeout=30)
    try:
        facts = gather_facts(["fs"], ctx)
        assert facts.fs is not None and facts.fs.workspace_backend == "plain"
        result = next(r for r in evaluate(strict, facts, phase="post-mount").results
                      if r.id == "fs.workspace_gocryptfs")
        assert result.result == "fail" and "backend plain, mount type tmpfs" in (result.reason or "")
    finally:
        subprocess.run(["umount", str(mnt)], check=True, timeout=30)
