"""Kubernetes auth: the pod's service-account token, checked by Vault through a TokenReview.

Must never: print the service-account token or keep it after login.
"""

from __future__ import annotations

from typing import ClassVar

from entrypoint.vault.auth.base import AuthContext, LoginResult, Op, login_result, read_credential
from entrypoint.vault.settings import AuthKind, VaultSettings


class KubernetesAuth:
    """Log in as ST_VAULT_ROLE with the token in ST_VAULT_K8S_TOKEN_FILE (default: the pod's)."""

    kind: ClassVar[AuthKind] = AuthKind.KUBERNETES
    fix_hint: ClassVar[str] = "ST_VAULT_ROLE and the service-account token"

    def __init__(self, settings: VaultSettings) -> None:
        self._settings = settings

    def login(self, ctx: AuthContext) -> LoginResult:
        """Log in; raises VaultAuthError when Vault or the TokenReview refuses the token."""
        jwt = read_credential(self._settings.k8s_token_file, "ST_VAULT_K8S_TOKEN_FILE")
        try:
            client = ctx.make_client(None)
            with ctx.guard(Op.LOGIN):
                answer = client.auth.kubernetes.login(
                    str(self._settings.role), jwt.reveal_str(), use_token=False,
                    mount_point=self._settings.effective_auth_mount)
            return login_result(answer, owned=True)
        finally:
            jwt.wipe()
