"""Process facts from /proc/self/status: ids, capabilities, no_new_privs, seccomp, PID 1.

Reads only this process's own status and container markers; never another process's memory
or environment.
"""

from __future__ import annotations

import os
import pwd
import resource
from pathlib import Path

from entrypoint.policy.context import PolicyContext
from entrypoint.policy.facts import ProcessFacts

__all__ = ["cap_names", "gather", "parse_status"]

# Linux capability numbers (include/uapi/linux/capability.h), index = bit.
_CAPS: tuple[str, ...] = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
_SECCOMP = {"0": "disabled", "1": "strict", "2": "filter"}
_CONTAINER_CGROUP_MARKERS = ("docker", "kubepods", "containerd", "libpod", "lxc")


def cap_names(mask_hex: str) -> tuple[str, ...]:
    """Names (CAP_*) of the bits set in a /proc status capability mask."""
    mask = int(mask_hex, 16)
    return tuple(f"CAP_{_CAPS[bit]}" if bit < len(_CAPS) else f"CAP_{bit}"
                 for bit in range(64) if mask >> bit & 1)


def parse_status(text: str) -> dict[str, str]:
    """`Key:\tvalue` lines of /proc/<pid>/status as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _in_container() -> bool:
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    try:
        cgroup = Path("/proc/1/cgroup").read_text(errors="replace")
    except OSError:
        return False
    return any(marker in cgroup for marker in _CONTAINER_CGROUP_MARKERS)


def gather(ctx: PolicyContext) -> ProcessFacts:
    """Facts about this process and the configured privilege drop. Raises nothing of ours."""
    status = parse_status(Path("/proc/self/status").read_text())
    uids = status.get("Uid", "").split()
    gids = status.get("Gid", "").split()
    drop = ctx.drop_ids
    return ProcessFacts(
        uid=int(uids[0]) if uids else os.getuid(),
        euid=int(uids[1]) if len(uids) > 1 else os.geteuid(),
        gid=int(gids[0]) if gids else os.getgid(),
        groups=tuple(int(g) for g in status.get("Groups", "").split()),
        cap_effective=cap_names(status.get("CapEff", "0")),
        cap_bounding=cap_names(status.get("CapBnd", "0")),
        no_new_privs=status.get("NoNewPrivs", "0") == "1",
        seccomp=_SECCOMP.get(status.get("Seccomp", ""), "unknown"),
        is_pid1=os.getpid() == 1,
        in_container=_in_container(),
        drop_configured=drop is not None,
        drop_uid=drop[0] if drop else None,
        drop_gid=drop[1] if drop else None,
        drop_uid_in_passwd=_has_passwd_entry(drop[0]) if drop else None,
        core_limit=_core_limit(),
        swap_on=_swap_on(),
        retention_days=_retention_days(ctx.env.get("ST_RETENTION_DAYS", "")),
    )


def _retention_days(raw: str) -> int | None:
    """A positive day count, else None (the run itself refuses a malformed value, exit 2)."""
    try:
        days = int(raw.strip())
    except ValueError:
        return None
    return days if days > 0 else None


def _has_passwd_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _core_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_CORE)
    return -1 if soft == resource.RLIM_INFINITY else int(soft)


def _swap_on(swaps: Path = Path("/proc/swaps")) -> bool:
    try:
        lines = swaps.read_text().splitlines()
    except OSError:
        return False  # no /proc/swaps: a kernel without swap support
    return len(lines) > 1  # the first line is the header
