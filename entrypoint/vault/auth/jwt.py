"""JWT auth: a signed JWT from a file (CI OIDC token, workload identity), verified by Vault.

Must never: print the JWT or keep it after login.
"""

from __future__ import annotations

from typing import ClassVar

from entrypoint.vault.auth.base import AuthContext, LoginResult, Op, login_result, read_credential
from entrypoint.vault.settings import AuthKind, VaultSettings


class JwtAuth:
    """Log in as ST_VAULT_ROLE with the JWT in ST_VAULT_JWT_FILE."""

    kind: ClassVar[AuthKind] = AuthKind.JWT
    fix_hint: ClassVar[str] = "ST_VAULT_ROLE and the JWT"

    def __init__(self, settings: VaultSettings) -> None:
        self._settings = settings

    def login(self, ctx: AuthContext) -> LoginResult:
        """Log in; raises VaultAuthError when Vault refuses the JWT (signature, audience, role)."""
        jwt = read_credential(self._settings.jwt_file, "ST_VAULT_JWT_FILE")
        try:
            client = ctx.make_client(None)
            with ctx.guard(Op.LOGIN):
                answer = client.auth.jwt.jwt_login(
                    str(self._settings.role), jwt.reveal_str(), use_token=False,
                    path=self._settings.effective_auth_mount)
            return login_result(answer, owned=True)
        finally:
            jwt.wipe()
