"""Network facts of this process's network namespace: interfaces, default route, DNS, canary.

The only packet this gatherer may send is one TCP connect to the configured canary (an IP
literal, never resolved); with no canary configured it sends nothing.
SECURITY: tests point the canary only at 127.0.0.1 or into a network namespace they create.
"""

from __future__ import annotations

import socket
from pathlib import Path

from entrypoint.policy.context import Canary, PolicyContext
from entrypoint.policy.facts import NetworkFacts

__all__ = ["canary_reachable", "gather", "has_default_route", "interfaces"]

_CONNECT_TIMEOUT_S = 1.0


def interfaces(proc_net: Path = Path("/proc/self/net")) -> tuple[str, ...]:
    """Names of the interfaces of this network namespace other than lo, sorted."""
    names = []
    for line in (proc_net / "dev").read_text().splitlines()[2:]:
        name = line.partition(":")[0].strip()
        if name and name != "lo":
            names.append(name)
    return tuple(sorted(names))


def has_default_route(proc_net: Path = Path("/proc/self/net")) -> bool:
    """True when the IPv4 or IPv6 routing table holds a default route (not via lo)."""
    try:
        for line in (proc_net / "route").read_text().splitlines()[1:]:
            cols = line.split()
            if len(cols) > 7 and cols[1] == "00000000" and cols[7] == "00000000":
                return True
    except OSError:
        pass  # no IPv4 table in this namespace: no IPv4 default route
    try:
        for line in (proc_net / "ipv6_route").read_text().splitlines():
            cols = line.split()
            if len(cols) == 10 and cols[0] == "0" * 32 and cols[1] == "00" and cols[9] != "lo":
                return True
    except OSError:
        pass  # IPv6 disabled
    return False


def _dns_configured(resolv_conf: Path) -> bool:
    try:
        text = resolv_conf.read_text(errors="replace")
    except OSError:
        return False
    return any(line.split()[:1] == ["nameserver"] for line in text.splitlines())


def canary_reachable(canary: Canary, timeout: float = _CONNECT_TIMEOUT_S) -> bool:
    """True when a TCP connection to the canary completes within `timeout` seconds."""
    family = socket.AF_INET6 if ":" in canary.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((canary.host, canary.port))
        except OSError:
            return False
    return True


def gather(ctx: PolicyContext) -> NetworkFacts:
    """Facts about the network this process (and so the trainer) can reach."""
    return NetworkFacts(
        interfaces=interfaces(),
        default_route=has_default_route(),
        dns_configured=_dns_configured(ctx.resolv_conf),
        canary_configured=ctx.canary is not None,
        canary_reachable=canary_reachable(ctx.canary) if ctx.canary else None,
    )
