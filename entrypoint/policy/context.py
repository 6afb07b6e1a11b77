"""What the policy preflight needs to know about the run it guards (settings, not facts).

The lifecycle (or `policy check`) builds one `PolicyContext`; gatherers read only from it and
from the live system. Must never hold a secret: Vault tokens stay in the Vault client, only
their TTL travels here.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from entrypoint.errors import ConfigError

if TYPE_CHECKING:
    from entrypoint.policy.profiles import Profile
    from secure_trainer.llm.config import LlmTrainConfig
    from secure_trainer.settings import TrainSettings

__all__ = ["AuditModeName", "Canary", "PolicyContext", "TokenInfo", "parse_canary"]

AuditModeName = Literal["kernel", "host", "app"]
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class Canary:
    """An address whose TCP reachability proves egress is open. IP literal only (no DNS)."""

    host: str
    port: int


@dataclass(frozen=True)
class TokenInfo:
    """Lifetime of the Vault token in use, when the caller already looked it up."""

    ttl_seconds: int
    renewable: bool


@dataclass(frozen=True)
class PolicyContext:
    """Inputs of one preflight: the profile, the run's settings and where things live.

    `workspace_dir` is the plaintext mountpoint, `cipher_dir` the gocryptfs cipher directory;
    `drop_ids` the (uid, gid) the training child drops to, None when no drop is configured.
    """

    profile: Profile
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    train: TrainSettings | LlmTrainConfig | None = None
    """Kohya's settings, or a train-llm config (`run --trainer llm`)."""
    workspace_dir: Path | None = None
    cipher_dir: Path | None = None
    drop_ids: tuple[int, int] | None = None
    audit_mode: AuditModeName = "app"
    log_level: str = "warning"
    canary: Canary | None = None
    vault_token: TokenInfo | None = None
    tmp_dir: Path = Path("/tmp")
    resolv_conf: Path = Path("/etc/resolv.conf")

    def __post_init__(self) -> None:
        if self.audit_mode not in ("kernel", "host", "app"):
            raise ConfigError("audit mode must be one of kernel, host, app")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}")


def parse_canary(value: str) -> Canary:
    """Parse `IP:PORT` (IPv6 as `[::1]:PORT`) into a Canary.

    Raises ConfigError when the host is not an IP literal or the port is out of range: a
    hostname would need DNS, and resolving it is itself egress.
    """
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise ConfigError("canary must be IP:PORT with an IP literal (no host names)") from None
    if not sep or not 0 < port < 65536:
        raise ConfigError("canary port must be 1..65535")
    return Canary(host=host, port=port)
