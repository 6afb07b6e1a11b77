"""Vault facts from the standard Vault environment: scheme, loopback, CA, auth method, token TTL.

Reads variable *presence* and the address scheme/host only; never reads or keeps a token,
a secret_id or the address itself (the address may name internal infrastructure).
coupling: variable names are those of entrypoint/vault/settings.py (helper D's VaultSettings).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from entrypoint.policy.context import PolicyContext
from entrypoint.policy.facts import VaultFacts

__all__ = ["gather"]

_TRUE = frozenset({"1", "true", "yes", "on"})


def _loopback(host: str | None) -> bool | None:
    if not host:
        return None
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _auth_method(env: dict[str, str]) -> str | None:
    method = env.get("ST_VAULT_AUTH", "").strip().lower()
    if method:
        return method
    if env.get("VAULT_TOKEN") or env.get("VAULT_TOKEN_FILE"):
        return "token"
    return None


def gather(ctx: PolicyContext) -> VaultFacts:
    """Facts about how the run will authenticate to and trust Vault."""
    env = dict(ctx.env)
    addr = env.get("VAULT_ADDR", "").strip()
    parts = urlsplit(addr) if addr else None
    ca = env.get("VAULT_CACERT") or env.get("VAULT_CAPATH")
    token = ctx.vault_token
    return VaultFacts(
        address_configured=bool(addr),
        address_scheme=(parts.scheme.lower() or None) if parts else None,
        address_loopback=_loopback(parts.hostname) if parts else None,
        ca_configured=bool(ca) and Path(ca or "").exists(),
        tls_skip_verify=env.get("ST_VAULT_TLS_SKIP_VERIFY", "").strip().lower() in _TRUE,
        auth_method=_auth_method(env),
        token_ttl=token.ttl_seconds if token else None,
        token_renewable=token.renewable if token else None,
    )
