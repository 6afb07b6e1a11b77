"""Token auth: a token the operator supplies through `VAULT_TOKEN` or `VAULT_TOKEN_FILE`.

The token is checked with `lookup-self` so a bad or expired token fails at login, not later.
Must never: revoke a supplied token on its own (`owned=False`), or print it.
"""

from __future__ import annotations

from typing import ClassVar

from entrypoint.errors import VaultError
from entrypoint.secret import Secret
from entrypoint.vault.auth.base import AuthContext, LoginResult, Op, read_credential
from entrypoint.vault.settings import AuthKind, VaultSettings


class TokenAuth:
    """Log in with an existing token (env first, then the token file)."""

    kind: ClassVar[AuthKind] = AuthKind.TOKEN
    fix_hint: ClassVar[str] = "token in VAULT_TOKEN or VAULT_TOKEN_FILE"

    def __init__(self, settings: VaultSettings) -> None:
        self._settings = settings

    def login(self, ctx: AuthContext) -> LoginResult:
        """Validate the token with lookup-self. Raises VaultAuthError when it is invalid/expired."""
        if self._settings.token is not None:
            # A copy: the client wipes its token at close, the settings keep theirs for re-login.
            token = Secret(bytes(self._settings.token.reveal()))
        else:
            token = read_credential(self._settings.token_file, "VAULT_TOKEN_FILE")
        client = ctx.make_client(token)
        with ctx.guard(Op.LOOKUP_TOKEN):
            answer = client.auth.token.lookup_self()
        try:
            data = answer["data"]
            ttl, renewable = int(data.get("ttl") or 0), bool(data.get("renewable"))
        except (KeyError, TypeError, ValueError):
            token.wipe()
            raise VaultError("Vault's token lookup answer was malformed (check VAULT_ADDR "
                             "points at Vault)") from None
        return LoginResult(token=token, ttl_s=ttl, renewable=renewable, owned=False)
