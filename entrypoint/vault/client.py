"""`VaultClient`: log in, read/write the workspace key in KV v2, renew and revoke the token.

This is the only module that sees hvac/requests exceptions: `_translate` maps them, by class and
by what the call was doing (`Op`), to our VaultError subclasses (exit 4) with a one-line message
that names the fix. Must never: put a URL, a Vault path, a token or a key in a message or a log
line; let hvac or requests read the environment (settings are explicit, `trust_env` is off);
follow redirects with the token header.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import hvac
import hvac.exceptions as hx
import requests
import urllib3

from entrypoint.errors import (
    SecretMissing,
    VaultAuthError,
    VaultError,
    VaultSealed,
    VaultUnreachable,
)
from entrypoint.secret import Secret
from entrypoint.vault.auth import AuthContext, AuthMethod, LoginResult, Op, auth_for
from entrypoint.vault.renewal import TokenRenewer
from entrypoint.vault.settings import VaultSettings

log = logging.getLogger(__name__)

# coupling: the KV v2 field names are the on-Vault format; docs/vault-and-keys.md documents them.
PASSPHRASE_FIELD = "passphrase"
AUDIT_KEY_FIELD = "key"
_KEY_OPS = {Op.READ_KEY, Op.WRITE_KEY, Op.READ_METADATA, Op.WRITE_METADATA, Op.DESTROY}
_MISSING = {
    Op.READ_KEY: "no workspace key in Vault (run `secure-trainer keys init`)",
    Op.READ_METADATA: "no workspace key in Vault (run `secure-trainer keys init`)",
    Op.READ_AUDIT_KEY: "no audit-log key in Vault (run `secure-trainer keys init`)",
    Op.LOGIN: "no such auth method mount in Vault (check ST_VAULT_AUTH and ST_VAULT_AUTH_MOUNT)",
}


@dataclass(frozen=True)
class KeyVersion:
    """One KV v2 version of the workspace key (never its value)."""

    version: int
    created: datetime | None
    destroyed: bool
    deleted: bool


@dataclass(frozen=True)
class KeyMetadata:
    """The workspace key's KV v2 metadata: versions and the custom metadata map."""

    current_version: int
    versions: tuple[KeyVersion, ...]
    custom: dict[str, str]


class VaultClient:
    """A logged-in view of one Vault server for secure-trainer's two secrets.

    Build with `from_settings`; call `login()` first. Every method raises VaultError
    subclasses only. Use as a context manager to stop renewal and revoke an owned token.
    """

    def __init__(self, *, settings: VaultSettings, auth: AuthMethod) -> None:
        self._settings = settings
        self._auth = auth
        self._login: LoginResult | None = None
        self._client: hvac.Client | None = None
        self._renewer: TokenRenewer | None = None
        self._renewal_failed = False

    @classmethod
    def from_settings(cls, settings: VaultSettings) -> VaultClient:
        """Production wiring: the auth method named by `settings.auth`."""
        return cls(settings=settings, auth=auth_for(settings))

    # -- plumbing ------------------------------------------------------------------------------

    def _make_client(self, token: Secret | None) -> hvac.Client:
        session = requests.Session()
        # SECURITY: no proxy/CA-bundle env (HTTP(S)_PROXY, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) may
        # redirect or weaken the connection that carries the token; settings are explicit.
        session.trust_env = False
        session.verify = self._settings.tls_verify
        if self._settings.unsafe_tls_skip_verify:
            # Already warned once in settings; urllib3's per-request warning prints the URL.
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        return hvac.Client(
            url=self._settings.addr,
            # "" (not None) so hvac does not fall back to VAULT_TOKEN or ~/.vault-token.
            token=token.reveal_str() if token is not None else "",
            verify=self._settings.tls_verify,
            # False (not None): hvac would otherwise pick VAULT_CLIENT_CERT/KEY read at its import.
            cert=False,
            timeout=self._settings.timeout_s,
            namespace=self._settings.namespace,
            session=session,
            # SECURITY: a redirect would resend X-Vault-Token to wherever it points.
            allow_redirects=False,
            proxies={},
        )

    @contextmanager
    def _guard(self, op: Op) -> Iterator[None]:
        try:
            yield
        except requests.exceptions.SSLError:
            raise VaultUnreachable("TLS verification of the Vault server failed (set VAULT_CACERT "
                                   "to the CA that signed its certificate)") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
            raise VaultUnreachable("cannot reach Vault (check VAULT_ADDR and that the server "
                                   "is up)") from None
        except requests.exceptions.RequestException:
            raise VaultUnreachable("Vault did not answer as Vault does (check VAULT_ADDR)") from None
        except hx.VaultError as err:
            raise self._translate(op, err) from None

    def _translate(self, op: Op, err: hx.VaultError) -> VaultError:
        if isinstance(err, hx.VaultDown):
            return VaultSealed("Vault is sealed or in standby (unseal it, then retry)")
        if isinstance(err, hx.VaultNotInitialized):
            return VaultSealed("Vault is not initialised (initialise and unseal it)")
        if op in (Op.UNWRAP, Op.WRAP_LOOKUP) and isinstance(
                err, (hx.InvalidRequest, hx.Forbidden, hx.Unauthorized, hx.InvalidPath)):
            return VaultAuthError("the wrapped secret_id was already used or has expired "
                                  "(issue a new wrapped secret_id)")
        if op is Op.LOGIN and isinstance(err, (hx.InvalidRequest, hx.Forbidden, hx.Unauthorized)):
            return VaultAuthError(f"{self._settings.auth.value} login was refused (check the "
                                  f"{self._auth.fix_hint})")
        if op in (Op.LOOKUP_TOKEN, Op.RENEW) and isinstance(err, (hx.Forbidden, hx.Unauthorized)):
            return VaultAuthError("the Vault token is invalid or expired (supply a fresh token "
                                  "or log in again)")
        if isinstance(err, (hx.Forbidden, hx.Unauthorized)):
            if not self._token_alive():
                return VaultAuthError("the Vault token has expired or was revoked (log in again)")
            what = "workspace key" if op in _KEY_OPS else "audit-log key"
            return VaultAuthError(f"Vault denied access to the {what} (grant this identity the "
                                  "secure-trainer policy)")
        if isinstance(err, hx.InvalidPath):
            return SecretMissing(_MISSING.get(op, f"Vault has nothing to {op.value} (run "
                                                  "`secure-trainer keys status`)"))
        if op in (Op.WRITE_KEY, Op.WRITE_AUDIT_KEY) and isinstance(err, hx.InvalidRequest):
            return VaultError("the key changed in Vault while writing it (another rotation "
                              "running? retry)")
        if isinstance(err, hx.RateLimitExceeded):
            return VaultError("Vault rate-limited the request (retry later)")
        return VaultError(f"Vault failed to {op.value} (check the Vault server log)")

    def _token_alive(self) -> bool:
        """Probe lookup-self to tell an expired token from a missing policy."""
        try:
            self._require().auth.token.lookup_self()
        except (hx.Forbidden, hx.Unauthorized):
            return False
        except (hx.VaultError, requests.exceptions.RequestException):
            return True  # unknown: report the access denial, not an expiry
        return True

    def _require(self) -> hvac.Client:
        if self._client is None:
            raise VaultAuthError("not logged in to Vault (internal order error: call login)")
        return self._client

    # -- login and token lifecycle ---------------------------------------------------------------

    def login(self) -> None:
        """Log in with the configured method. Raises VaultAuthError, VaultUnreachable, VaultSealed."""
        ctx = AuthContext(make_client=self._make_client, guard=self._guard)
        self._login = self._auth.login(ctx)
        self._client = self._make_client(self._login.token)
        log.info("vault login ok (method=%s, ttl=%ss, renewable=%s)", self._settings.auth.value,
                 self._login.ttl_s, self._login.renewable)

    @property
    def token_owned(self) -> bool:
        """True when the token came from a login by us (and so is revoked at teardown)."""
        return self._login is not None and self._login.owned

    def token_ttl(self) -> int:
        """Seconds the token has left (0: no expiry). Raises VaultAuthError if it expired."""
        with self._guard(Op.LOOKUP_TOKEN):
            answer = self._require().auth.token.lookup_self()
        return int(_field(answer, "data", "ttl") or 0)

    def token_accessor(self) -> str:
        """The token's accessor (an id for audit records; not the token). Raises VaultAuthError."""
        with self._guard(Op.LOOKUP_TOKEN):
            answer = self._require().auth.token.lookup_self()
        return str(_field(answer, "data", "accessor"))

    def start_renewal(self) -> bool:
        """Renew the token in a background thread at ~2/3 of its TTL until `stop_renewal`.

        Returns False (and starts nothing) when the token does not expire or is not renewable.
        """
        if self._login is None:
            raise VaultAuthError("not logged in to Vault (internal order error: call login)")
        if self._renewer is not None or self._login.ttl_s <= 0 or not self._login.renewable:
            return False
        renewer = self._make_client(self._login.token)  # own session: requests is not thread-safe

        def renew() -> int:
            with self._guard(Op.RENEW):
                answer = renewer.auth.token.renew_self()
            return int(_field(answer, "auth", "lease_duration") or 0)

        self._renewer = TokenRenewer(renew, self._login.ttl_s,
                                     join_timeout_s=self._settings.timeout_s + 1)
        self._renewer.start()
        return True

    def stop_renewal(self) -> None:
        """Stop the renewal thread and wait for it (bounded by the request timeout)."""
        if self._renewer is not None:
            self._renewer.stop()
            self._renewal_failed = self._renewal_failed or self._renewer.failed
            self._renewer = None

    @property
    def renewal_failed(self) -> bool:
        """True once renewal gave up (token refused, or it reached its max TTL)."""
        return self._renewal_failed or (self._renewer is not None and self._renewer.failed)

    @property
    def renewing(self) -> bool:
        """True while the renewal thread runs."""
        return self._renewer is not None and self._renewer.alive

    def revoke_self(self) -> None:
        """Revoke the token if we obtained it by login; a supplied token is left alone.

        Stops renewal first and forgets the token either way. Raises VaultError on failure.
        """
        self.stop_renewal()
        if self._client is None or self._login is None:
            return
        try:
            if self._login.owned:
                with self._guard(Op.REVOKE):
                    self._client.auth.token.revoke_self()
        finally:
            self._client.adapter.close()
            self._client = None
            self._login.token.wipe()
            self._login = None

    def close(self) -> None:
        """Stop renewal and revoke an owned token (alias of `revoke_self`)."""
        self.revoke_self()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.close()
        except VaultError:
            if et is None:
                raise
            log.warning("vault token revocation failed during teardown")

    # -- workspace key (KV v2) -------------------------------------------------------------------

    def _kv(self) -> Any:
        return self._require().secrets.kv.v2

    def read_passphrase(self, version: int | None = None) -> tuple[Secret, int]:
        """The workspace passphrase (latest, or `version`) and its version number.

        Raises SecretMissing when absent, deleted or destroyed; VaultAuthError when denied.
        """
        s = self._settings
        with self._guard(Op.READ_KEY):
            answer = self._kv().read_secret_version(path=s.key_path, version=version,
                                                    mount_point=s.kv_mount,
                                                    raise_on_deleted_version=True)
        value = _field(answer, "data", "data", PASSPHRASE_FIELD)
        got = int(_field(answer, "data", "metadata", "version"))
        if not isinstance(value, str) or not value:
            raise SecretMissing(f"workspace key version {got} holds no passphrase (run "
                                "`secure-trainer keys rotate`)")
        return Secret(value), got

    def write_passphrase(self, passphrase: Secret, *, cas: int) -> int:
        """Write a new version (check-and-set on `cas`: 0 = must not exist); returns its number.

        Raises VaultError when the key changed concurrently, VaultAuthError when denied.
        """
        s = self._settings
        with self._guard(Op.WRITE_KEY):
            answer = self._kv().create_or_update_secret(
                path=s.key_path, secret={PASSPHRASE_FIELD: passphrase.reveal_str()}, cas=cas,
                mount_point=s.kv_mount)
        return int(_field(answer, "data", "version"))

    def key_metadata(self) -> KeyMetadata:
        """Versions and custom metadata of the workspace key. Raises SecretMissing when absent."""
        s = self._settings
        with self._guard(Op.READ_METADATA):
            answer = self._kv().read_secret_metadata(path=s.key_path, mount_point=s.kv_mount)
        versions = []
        for number, info in dict(_field(answer, "data", "versions") or {}).items():
            versions.append(KeyVersion(version=int(number),
                                       created=_parse_time(info.get("created_time")),
                                       destroyed=bool(info.get("destroyed")),
                                       deleted=bool(info.get("deletion_time"))))
        custom = _field(answer, "data", "custom_metadata") or {}
        return KeyMetadata(current_version=int(_field(answer, "data", "current_version") or 0),
                           versions=tuple(sorted(versions, key=lambda v: v.version)),
                           custom={str(k): str(v) for k, v in dict(custom).items()})

    def set_key_custom_metadata(self, custom: dict[str, str]) -> None:
        """Replace the workspace key's custom metadata map. Raises VaultError subclasses."""
        s = self._settings
        with self._guard(Op.WRITE_METADATA):
            self._kv().update_metadata(path=s.key_path, custom_metadata=custom,
                                       mount_point=s.kv_mount)

    def destroy_version(self, version: int) -> None:
        """Permanently destroy one version of the workspace key. Raises VaultError subclasses."""
        s = self._settings
        with self._guard(Op.DESTROY):
            self._kv().destroy_secret_versions(path=s.key_path, versions=[version],
                                               mount_point=s.kv_mount)

    def audit_key(self, *, create: bool = False) -> Secret:
        """The HMAC key of the app audit log (a separate KV secret; not rotated with the key).

        With `create`, a missing key is generated (32 random bytes, hex) and stored with cas=0.
        Raises SecretMissing when absent and not created.
        """
        s = self._settings
        try:
            with self._guard(Op.READ_AUDIT_KEY):
                answer = self._kv().read_secret_version(path=s.audit_key_path,
                                                        mount_point=s.kv_mount,
                                                        raise_on_deleted_version=True)
        except SecretMissing:
            if not create:
                raise
            key = Secret.generate()
            with self._guard(Op.WRITE_AUDIT_KEY):
                self._kv().create_or_update_secret(path=s.audit_key_path,
                                                   secret={AUDIT_KEY_FIELD: key.reveal_str()},
                                                   cas=0, mount_point=s.kv_mount)
            return key
        value = _field(answer, "data", "data", AUDIT_KEY_FIELD)
        if not isinstance(value, str) or not value:
            raise SecretMissing("the audit-log key in Vault is empty (restore it from backup)")
        return Secret(value)


def _field(answer: Any, *keys: str) -> Any:
    """Walk a Vault JSON answer; a missing key means the server is not the Vault we expect."""
    node = answer
    try:
        for key in keys:
            node = node[key]
    except (KeyError, TypeError, IndexError):
        raise VaultError("Vault's answer was malformed (check VAULT_ADDR points at Vault)") from None
    return node


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
