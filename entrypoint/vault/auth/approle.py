"""AppRole auth: role_id + secret_id read from files; the secret_id may be response-wrapped.

A wrapped secret_id is checked (its creation path must be this AppRole mount's secret-id
endpoint, so a token minted elsewhere is refused) and unwrapped exactly once; Vault refuses a
second unwrap, which surfaces as VaultAuthError (exit 4).
Must never: keep the credentials after login, or print them.
"""

from __future__ import annotations

import re
from typing import ClassVar

from entrypoint.errors import VaultAuthError, VaultError
from entrypoint.secret import Secret
from entrypoint.vault.auth.base import AuthContext, LoginResult, Op, login_result, read_credential
from entrypoint.vault.settings import AuthKind, VaultSettings


class AppRoleAuth:
    """Log in with AppRole credentials from ST_VAULT_ROLE_ID_FILE / ST_VAULT_SECRET_ID_FILE."""

    kind: ClassVar[AuthKind] = AuthKind.APPROLE
    fix_hint: ClassVar[str] = "role_id and secret_id files"

    def __init__(self, settings: VaultSettings) -> None:
        self._settings = settings

    def login(self, ctx: AuthContext) -> LoginResult:
        """Log in; raises VaultAuthError for a bad role_id/secret_id or a reused wrapped secret_id."""
        role_id = read_credential(self._settings.role_id_file, "ST_VAULT_ROLE_ID_FILE")
        secret_id = read_credential(self._settings.secret_id_file, "ST_VAULT_SECRET_ID_FILE")
        try:
            if self._settings.secret_id_wrapped:
                wrapping = secret_id
                try:
                    secret_id = self._unwrap(ctx, wrapping)
                finally:
                    wrapping.wipe()
            client = ctx.make_client(None)
            with ctx.guard(Op.LOGIN):
                answer = client.auth.approle.login(
                    role_id.reveal_str(), secret_id.reveal_str(), use_token=False,
                    mount_point=self._settings.effective_auth_mount)
            return login_result(answer, owned=True)
        finally:
            role_id.wipe()
            secret_id.wipe()

    def _unwrap(self, ctx: AuthContext, wrapping: Secret) -> Secret:
        anonymous = ctx.make_client(None)
        with ctx.guard(Op.WRAP_LOOKUP):
            info = anonymous.adapter.post("/v1/sys/wrapping/lookup",
                                          json={"token": wrapping.reveal_str()})
        try:
            creation_path = str(info["data"]["creation_path"])
        except (KeyError, TypeError):
            raise VaultError("Vault's wrapping lookup answer was malformed (check VAULT_ADDR "
                             "points at Vault)") from None
        mount = re.escape(self._settings.effective_auth_mount)
        # SECURITY: only a token that wraps an AppRole secret-id response is accepted.
        if not re.fullmatch(rf"auth/{mount}/role/[^/]+/secret-id", creation_path):
            raise VaultAuthError("the wrapped secret_id was not issued by AppRole "
                                 "(issue a new wrapped secret_id)")
        unwrapper = ctx.make_client(wrapping)
        with ctx.guard(Op.UNWRAP):
            answer = unwrapper.sys.unwrap()
        try:
            return Secret(str(answer["data"]["secret_id"]))
        except (KeyError, TypeError):
            raise VaultAuthError("the wrapped token holds no secret_id (issue a new wrapped "
                                 "secret_id)") from None
