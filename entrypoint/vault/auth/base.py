"""The seam every Vault auth method implements: `AuthMethod.login(ctx) -> LoginResult`.

Auth methods call hvac through the context they are given and label each call with an `Op`;
the mapping of hvac/requests exceptions to our errors lives in vault.py only.
Must never: log, print or put in an error message any credential it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Protocol

import hvac

from entrypoint.errors import VaultAuthError, VaultError
from entrypoint.secret import Secret
from entrypoint.vault.settings import AuthKind


class Op(Enum):
    """What a Vault call was doing, so vault.py can say what failed and how to fix it."""

    LOGIN = "log in"
    LOOKUP_TOKEN = "check the token"
    WRAP_LOOKUP = "inspect the wrapped secret_id"
    UNWRAP = "unwrap the secret_id"
    READ_KEY = "read the workspace key"
    WRITE_KEY = "write the workspace key"
    READ_METADATA = "read the workspace key metadata"
    WRITE_METADATA = "update the workspace key metadata"
    DESTROY = "destroy an old workspace key version"
    READ_AUDIT_KEY = "read the audit-log key"
    WRITE_AUDIT_KEY = "write the audit-log key"
    RENEW = "renew the token"
    REVOKE = "revoke the token"


@dataclass(frozen=True)
class LoginResult:
    """A Vault token and what Vault said about it.

    Attributes:
        token: the client token (never printed).
        ttl_s: remaining lifetime in seconds; 0 means it does not expire.
        renewable: whether `renew-self` may extend it.
        owned: True when secure-trainer obtained it by logging in (so it may revoke it);
            False for a token the operator supplied.
    """

    token: Secret = field(repr=False)
    ttl_s: int
    renewable: bool
    owned: bool


# A context manager factory that translates foreign exceptions raised inside it (vault.py).
Guard = Callable[[Op], AbstractContextManager[None]]
# Builds an hvac client for the configured server; `None` means no token header.
ClientFactory = Callable[[Secret | None], hvac.Client]


@dataclass(frozen=True)
class AuthContext:
    """What an auth method gets to log in with: a client factory and the exception guard."""

    make_client: ClientFactory
    guard: Guard


class AuthMethod(Protocol):
    """One Vault auth method. `login` raises VaultError subclasses only (via ctx.guard)."""

    kind: ClassVar[AuthKind]
    # What to check when this method's login is refused (no path, no secret).
    fix_hint: ClassVar[str]

    def login(self, ctx: AuthContext) -> LoginResult:
        """Log in and return the token. Raises VaultAuthError / VaultUnreachable / VaultSealed."""
        ...


def read_credential(path: Path | None, env_name: str) -> Secret:
    """Read a credential file into a `Secret`, whitespace-stripped.

    Raises VaultAuthError naming the env variable (never the path) when it cannot be read or is
    empty. Symlinks are followed on purpose: Kubernetes projects tokens through them.
    """
    if path is None:
        raise VaultAuthError(f"{env_name} is not set")
    try:
        raw = bytearray(path.read_bytes())
    except OSError:
        raise VaultAuthError(f"cannot read the file named by {env_name} (check it exists "
                             "and is readable)") from None
    value = Secret(raw.strip())
    for i in range(len(raw)):  # SECURITY: do not leave a second copy in memory.
        raw[i] = 0
    if not value:
        raise VaultAuthError(f"the file named by {env_name} is empty")
    return value


def login_result(response: Any, *, owned: bool) -> LoginResult:
    """Turn an auth response body (`{"auth": {...}}`) into a LoginResult.

    Raises VaultError when the answer has no token (a server or proxy that is not Vault).
    """
    try:
        auth = response["auth"]
        return LoginResult(token=Secret(str(auth["client_token"])),
                           ttl_s=int(auth.get("lease_duration") or 0),
                           renewable=bool(auth.get("renewable")), owned=owned)
    except (KeyError, TypeError, ValueError):
        raise VaultError("Vault's login answer had no token (check VAULT_ADDR points at "
                         "Vault)") from None

