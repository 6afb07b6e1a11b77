"""Every Vault auth method against a real OpenBao dev server (no mocks).

Kubernetes auth: OpenBao's real kubernetes auth plugin is configured with `kubernetes_host`
pointing at a small loopback TokenReview responder started here — a stand-in for the Kubernetes
API server (which cannot run here), not for Vault.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from entrypoint.errors import VaultAuthError, VaultError, VaultUnreachable
from entrypoint.secret import Secret
from entrypoint.vault.auth import AUTH_METHODS
from entrypoint.vault.client import VaultClient
from entrypoint.vault.devserver import DevVault, site_policy
from entrypoint.vault.settings import AuthKind, VaultSettings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


# -- helpers -------------------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_rs256(key: rsa.RSAPrivateKey, claims: dict[str, Any]) -> str:
    """A compact RS256 JWT signed with `cryptography` (PyJWT is not a dependency)."""
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64url(signature)}"


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def write_file(path: Path, value: str) -> Path:
    path.write_text(value)
    path.chmod(0o600)
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def seed_key(dev_vault: DevVault, key_path: str) -> Secret:
    """Write a passphrase at `key_path` with the root token; returns it."""
    value = Secret.generate()
    dev_vault.root_client().secrets.kv.v2.create_or_update_secret(
        path=key_path, secret={"passphrase": value.reveal_str()}, mount_point="secret")
    return value


def policy_for(dev_vault: DevVault, key_path: str) -> str:
    name = unique("pol")
    dev_vault.root_client().sys.create_or_update_policy(
        name, site_policy(key_path=key_path, audit_key_path=key_path + "-audit"))
    return name


def read_with(env: dict[str, str]) -> tuple[Secret, int]:
    with VaultClient.from_settings(VaultSettings.from_env(env)) as client:
        client.login()
        return client.read_passphrase()


# -- tests ---------------------------------------------------------------------------------------

def test_every_auth_kind_has_a_method() -> None:
    assert set(AUTH_METHODS) == set(AuthKind)
    for kind, factory in AUTH_METHODS.items():
        assert factory.kind is kind  # type: ignore[attr-defined]


def test_token_from_env_and_from_file(dev_vault: DevVault, tmp_path: Path) -> None:
    path = unique("tok")
    expected = seed_key(dev_vault, path)
    policy = policy_for(dev_vault, path)
    token = dev_vault.root_client().auth.token.create(policies=[policy], ttl="5m")["auth"][
        "client_token"]
    base = {"VAULT_ADDR": dev_vault.addr, "ST_VAULT_KEY_PATH": path}
    got, version = read_with({**base, "VAULT_TOKEN": token})
    assert got == expected and version == 1
    token_file = write_file(tmp_path / "token", token + "\n")
    got, _ = read_with({**base, "VAULT_TOKEN_FILE": str(token_file)})
    assert got == expected
    # A supplied token is the operator's: closing the client must not revoke it.
    assert dev_vault.root_client().auth.token.lookup(token)["data"]["ttl"] > 0


def test_approle_login_reads_the_key_and_revokes_its_token(dev_vault: DevVault,
                                                           tmp_path: Path) -> None:
    path = unique("ws")
    env = dev_vault.add_workspace_role(unique("role"), tmp_path, key_path=path,
                                       audit_key_path=path + "-audit")
    expected = seed_key(dev_vault, path)
    client = VaultClient.from_settings(VaultSettings.from_env(env))
    client.login()
    assert client.token_owned
    accessor = client.token_accessor()
    got, _ = client.read_passphrase()
    assert got == expected
    client.revoke_self()
    answer = dev_vault.root_client().adapter.post(
        "/v1/auth/token/lookup-accessor", json={"accessor": accessor}, raise_exception=False)
    assert answer.status_code == 400  # the accessor (so the token) is gone


def test_wrapped_secret_id_unwraps_once(dev_vault: DevVault, tmp_path: Path) -> None:
    path = unique("ws")
    env = dev_vault.add_workspace_role(unique("role"), tmp_path, key_path=path,
                                       audit_key_path=path + "-audit", wrap_secret_id=True)
    expected = seed_key(dev_vault, path)
    got, _ = read_with(env)
    assert got == expected
    # Second use of the same wrapping token: a real CLI process, exit 4, one safe line.
    proc = subprocess.run(
        [sys.executable, "-m", "entrypoint.cli", "keys", "status", "--cipher-dir",
         str(tmp_path / "cipher")],
        env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, check=False,
        timeout=60, cwd=REPO)
    assert proc.returncode == 4, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("error[vault]: the wrapped secret_id was already used"), line
    assert "\n" not in line and "://" not in line and path not in line
    wrapping = Path(env["ST_VAULT_SECRET_ID_FILE"]).read_text()
    assert wrapping not in proc.stderr + proc.stdout


def test_wrapped_token_from_elsewhere_is_refused(dev_vault: DevVault, tmp_path: Path) -> None:
    path = unique("ws")
    env = dev_vault.add_workspace_role(unique("role"), tmp_path, key_path=path,
                                       audit_key_path=path + "-audit", wrap_secret_id=True)
    # A wrapping token that wraps something else (sys/wrapping/wrap), not an AppRole secret-id.
    other = dev_vault.root_client().sys.wrap(payload={"secret_id": "not-from-approle"}, ttl=60)
    write_file(Path(env["ST_VAULT_SECRET_ID_FILE"]), other["wrap_info"]["token"])
    with pytest.raises(VaultAuthError, match="not issued by AppRole") as err:
        read_with(env)
    assert err.value.exit_code == 4


def test_jwt_login_with_locally_signed_token(dev_vault: DevVault, tmp_path: Path) -> None:
    path = unique("ws")
    expected = seed_key(dev_vault, path)
    policy = policy_for(dev_vault, path)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    mount = unique("jwt")
    root = dev_vault.root_client()
    root.sys.enable_auth_method("jwt", path=mount)
    root.adapter.post(f"/v1/auth/{mount}/config",
                      json={"jwt_validation_pubkeys": [public_pem(key)], "bound_issuer": "ci"})
    root.adapter.post(f"/v1/auth/{mount}/role/trainer",
                      json={"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"],
                            "token_policies": [policy], "token_ttl": "5m"})
    now = int(time.time())
    claims = {"iss": "ci", "sub": "pipeline-7", "aud": "vault", "iat": now, "nbf": now - 5,
              "exp": now + 300}
    jwt_file = write_file(tmp_path / "jwt", sign_rs256(key, claims))
    env = {"VAULT_ADDR": dev_vault.addr, "ST_VAULT_AUTH": "jwt", "ST_VAULT_ROLE": "trainer",
           "ST_VAULT_JWT_FILE": str(jwt_file), "ST_VAULT_AUTH_MOUNT": mount,
           "ST_VAULT_KEY_PATH": path}
    got, _ = read_with(env)
    assert got == expected
    # A JWT signed by another key is refused: exit 4, message names the fix.
    write_file(jwt_file, sign_rs256(rsa.generate_private_key(public_exponent=65537,
                                                             key_size=2048), claims))
    with pytest.raises(VaultAuthError, match="jwt login was refused") as err:
        read_with(env)
    assert err.value.exit_code == 4


def self_signed_loopback_cert(directory: Path) -> tuple[Path, Path, str]:
    """A self-signed certificate for 127.0.0.1 (cert file, key file, cert PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokenreview-standin")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_file = write_file(directory / "standin.crt", pem)
    key_file = directory / "standin.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file, pem


class _TokenReviewResponder:
    """Loopback HTTPS stand-in for the Kubernetes API server's TokenReview endpoint."""

    def __init__(self, username: str, uid: str, tls_dir: Path) -> None:
        self.requests: list[dict[str, Any]] = []
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                responder.requests.append({"path": self.path, "body": body,
                                           "authorization": self.headers.get("Authorization")})
                answer = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                          "status": {"authenticated": True,
                                     "user": {"username": username, "uid": uid, "groups": []}}}
                data = json.dumps(answer).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        cert_file, key_file, self.ca_pem = self_signed_loopback_cert(tls_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def k8s_responder(tmp_path: Path) -> Iterator[_TokenReviewResponder]:
    with _TokenReviewResponder("system:serviceaccount:train:trainer",
                               "0b6e1d6c-1111-4a4a-9c9c-5f5f5f5f5f5f", tmp_path) as responder:
        yield responder


def test_kubernetes_login_sends_a_tokenreview(dev_vault: DevVault, tmp_path: Path,
                                              k8s_responder: _TokenReviewResponder) -> None:
    path = unique("ws")
    expected = seed_key(dev_vault, path)
    policy = policy_for(dev_vault, path)
    mount = unique("k8s")
    root = dev_vault.root_client()
    root.sys.enable_auth_method("kubernetes", path=mount)
    root.adapter.post(f"/v1/auth/{mount}/config",
                      json={"kubernetes_host": k8s_responder.url, "disable_local_ca_jwt": True,
                            "kubernetes_ca_cert": k8s_responder.ca_pem})
    root.adapter.post(f"/v1/auth/{mount}/role/trainer",
                      json={"bound_service_account_names": ["trainer"],
                            "bound_service_account_namespaces": ["train"],
                            "token_policies": [policy], "token_ttl": "5m"})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    sa_token = sign_rs256(key, {
        "iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:train:trainer",
        "kubernetes.io/serviceaccount/namespace": "train",
        "kubernetes.io/serviceaccount/service-account.name": "trainer",
        "kubernetes.io/serviceaccount/service-account.uid": "0b6e1d6c-1111-4a4a-9c9c-5f5f5f5f5f5f",
        "iat": now, "exp": now + 300})
    token_file = write_file(tmp_path / "sa-token", sa_token)
    env = {"VAULT_ADDR": dev_vault.addr, "ST_VAULT_AUTH": "kubernetes",
           "ST_VAULT_ROLE": "trainer", "ST_VAULT_K8S_TOKEN_FILE": str(token_file),
           "ST_VAULT_AUTH_MOUNT": mount, "ST_VAULT_KEY_PATH": path}
    got, _ = read_with(env)
    assert got == expected
    # The request OpenBao sent to the (stand-in) API server carries exactly our token.
    assert len(k8s_responder.requests) == 1
    review = k8s_responder.requests[0]
    assert review["path"] == "/apis/authentication.k8s.io/v1/tokenreviews"
    assert review["body"]["spec"]["token"] == sa_token
    # No reviewer JWT configured: OpenBao authenticates the review with the client's own token.
    assert review["authorization"] == f"Bearer {sa_token}"
    # A service account the role does not bind is refused before any TokenReview.
    write_file(token_file, sign_rs256(key, {
        "iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:train:intruder",
        "kubernetes.io/serviceaccount/namespace": "train",
        "kubernetes.io/serviceaccount/service-account.name": "intruder",
        "kubernetes.io/serviceaccount/service-account.uid": "1",
        "iat": now, "exp": now + 300}))
    with pytest.raises(VaultError) as err:
        read_with(env)
    assert isinstance(err.value, VaultAuthError) and err.value.exit_code == 4


def test_tls_needs_the_ca_and_honours_vault_cacert(tmp_path: Path) -> None:
    vault = DevVault.start(tmp_path / "bao-tls", tls=True)
    try:
        assert vault.addr.startswith("https://")
        path = unique("ws")
        expected = seed_key(vault, path)
        env = vault.add_workspace_role(unique("role"), tmp_path / "files", key_path=path,
                                       audit_key_path=path + "-audit")
        assert "VAULT_CACERT" in env
        assert read_with(env)[0] == expected
        without_ca = {k: v for k, v in env.items() if k != "VAULT_CACERT"}
        with pytest.raises(VaultUnreachable, match="VAULT_CACERT") as err:
            read_with(without_ca)
        assert err.value.exit_code == 4
        # The dev-only opt-out is explicit and still works (so the test above is about TLS).
        assert read_with({**without_ca, "ST_VAULT_TLS_SKIP_VERIFY": "1"})[0] != Secret(b"x")
    finally:
        vault.stop()


def test_vault_namespace_is_honoured(tmp_path: Path) -> None:
    vault = DevVault.start(tmp_path / "bao-ns")  # own server: namespaces are global state
    try:
        root = vault.root_client()
        root.sys.create_namespace("team-a")
        root.adapter.namespace = "team-a"
        root.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        expected = Secret.generate()
        root.secrets.kv.v2.create_or_update_secret(
            path="secure-trainer/workspace", secret={"passphrase": expected.reveal_str()})
        env = {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": vault.root_token.reveal_str()}
        assert read_with({**env, "VAULT_NAMESPACE": "team-a"})[0] == expected
        with pytest.raises(VaultError, match="keys init"):  # the root namespace has no key
            read_with(env)
    finally:
        vault.stop()
