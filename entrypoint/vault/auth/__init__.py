"""Vault auth methods, one module each, listed in one explicit registry (no import magic).

coupling: a new method needs an `AuthKind` member (vault_settings.py) and an entry here;
tests/integration/test_vault_auth.py checks every AuthKind maps to a method.
"""

from __future__ import annotations

from collections.abc import Callable

from entrypoint.vault.auth.approle import AppRoleAuth
from entrypoint.vault.auth.base import AuthContext, AuthMethod, LoginResult, Op
from entrypoint.vault.auth.jwt import JwtAuth
from entrypoint.vault.auth.kubernetes import KubernetesAuth
from entrypoint.vault.auth.token import TokenAuth
from entrypoint.vault.settings import AuthKind, VaultSettings

__all__ = ["AUTH_METHODS", "AuthContext", "AuthMethod", "LoginResult", "Op", "auth_for"]

AUTH_METHODS: dict[AuthKind, Callable[[VaultSettings], AuthMethod]] = {
    AuthKind.TOKEN: TokenAuth,
    AuthKind.APPROLE: AppRoleAuth,
    AuthKind.KUBERNETES: KubernetesAuth,
    AuthKind.JWT: JwtAuth,
}


def auth_for(settings: VaultSettings) -> AuthMethod:
    """The auth method `settings.auth` names, built from the settings."""
    return AUTH_METHODS[settings.auth](settings)
