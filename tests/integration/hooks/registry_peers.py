"""Real peers for the registry hook tests that the shared stack does not provide.

``running_token_registry``: a second real ``docker-registry`` (distribution) configured with ``auth: token``,
and in front of it a tiny real token server (http.server in a thread) that checks Basic credentials
and signs JWTs with a throw-away key whose certificate the registry trusts. This is the Bearer token
flow Artifact Registry and Docker Hub use, end to end, with no mock.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SERVICE = "faye-test-registry"
ISSUER = "faye-test-issuer"
USER, PASSWORD = "ci", "s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class TokenServer:
    """What the token server saw, and a knob to make it fail transiently."""

    key: rsa.RSAPrivateKey
    cert_der: bytes
    url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with 503 first

    def issue(self, scopes: list[str], expires_in: int = 300) -> str:
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "exp": now + expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        x5c = [base64.b64encode(self.cert_der).decode()]
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": x5c})


def _handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            auth = self.headers.get("Authorization", "")
            server.requests.append(
                {
                    "auth": auth,
                    "service": ",".join(query.get("service", [])),
                    "scope": " ".join(query.get("scope", [])),
                }
            )
            if server.fail_next > 0:
                server.fail_next -= 1
                self._answer(503, {"details": "token server is busy"})
                return
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if auth != expected:
                self._answer(401, {"details": "bad credentials"})
                return
            token = server.issue(query.get("scope", []))
            self._answer(
                200, {"token": token, "expires_in": 300, "issued_at": dt.datetime.now(dt.UTC).isoformat()}
            )

    return Handler


def _key_and_cert() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "faye test token issuer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@dataclass
class TokenRegistry:
    url: str  # http://127.0.0.1:<port>
    host: str  # 127.0.0.1:<port>
    tokens: TokenServer


@contextlib.contextmanager
def running_token_registry(root: Path) -> Iterator[TokenRegistry]:
    """Run a token-auth registry and its token server, with their files under ``root``."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
    key, cert = _key_and_cert()
    (root / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tokens = TokenServer(key=key, cert_der=cert.public_bytes(serialization.Encoding.DER))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(tokens))
    tokens.url = f"http://127.0.0.1:{httpd.server_address[1]}/token"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "auth": {
            "token": {
                "realm": tokens.url,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(root / "cert.pem"),
            }
        },
    }
    (root / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/")
        yield TokenRegistry(url=f"http://127.0.0.1:{port}", host=f"127.0.0.1:{port}", tokens=tokens)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        httpd.shutdown()
        httpd.server_close()


def push_tiny_image(base_url: str, name: str, tag: str, headers: dict[str, str] | None = None) -> str:
    """Push a one-config, no-layer OCI image through the registry API; return its manifest digest."""
    headers = headers or {}

    def blob(data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = requests.post(f"{base_url}/v2/{name}/blobs/uploads/", headers=headers, timeout=10)
        start.raise_for_status()
        location = start.headers["Location"]
        location = location if location.startswith("http") else base_url + location
        done = requests.put(
            location,
            params={"digest": digest},
            data=data,
            headers={**headers, "Content-Type": "application/octet-stream"},
            timeout=10,
        )
        done.raise_for_status()
        return digest, len(data)

    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "marker": tag}
    ).encode()
    config_digest, config_size = blob(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [],
        }
    ).encode()
    put = requests.put(
        f"{base_url}/v2/{name}/manifests/{tag}",
        data=manifest,
        headers={**headers, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    put.raise_for_status()
    return str(put.headers["Docker-Content-Digest"])
