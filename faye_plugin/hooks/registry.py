"""The registry hook: does an image exist, and under which digest (Registry HTTP API v2 / OCI).

One code path for the local ``docker-registry`` (distribution 2.8) and Artifact Registry:
``HEAD /v2/<name>/manifests/<reference>`` with all four manifest media types in ``Accept`` (without
them distribution 2.8 answers 400 or a misleading 404), and the Bearer token flow on a 401.

Connection (conn_type ``faye_registry``): host = the registry URL (``http://127.0.0.1:28703`` or
``https://europe-docker.pkg.dev``); login/password = credentials sent to the token realm (Artifact
Registry: ``oauth2accesstoken`` and an access token); or extra ``gcp_conn_id`` = a google connection
whose access token is used as that password.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from airflow.sdk import BaseHook

from faye_plugin.exceptions import InvalidRequestError, RegistryError
from faye_plugin.retries import DEFAULT_POLICY, TRANSIENT_STATUSES

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)

NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
CHALLENGE_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')

TRANSIENT_STATUS = TRANSIENT_STATUSES
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (requests.ConnectionError, requests.Timeout)
TOKEN_EXPIRY_MARGIN = 10  # seconds: refresh a token this long before it expires


def split_repository(repository: str) -> tuple[str | None, str]:
    """Split ``host[:port]/name`` into (host, name); host is None when the first part is not a host.

    As in Docker references, the first path component is a host when it contains ``.`` or ``:`` or is
    ``localhost``.
    """
    first, sep, rest = repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, repository


def check_reference(name: str, reference: str) -> None:
    """Raise InvalidRequestError unless ``name`` is a repository name and ``reference`` a tag or digest."""
    if not NAME_RE.match(name):
        raise InvalidRequestError(
            f"repository name {name!r} is invalid: lowercase path components of letters and digits "
            "separated by '.', '_' or '-', joined by '/'"
        )
    if not (TAG_RE.match(reference) or DIGEST_RE.match(reference)):
        raise InvalidRequestError(f"image reference {reference!r} is neither a tag nor a digest")


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Return the scheme and parameters of a ``WWW-Authenticate`` header."""
    scheme, _, params = header.strip().partition(" ")
    return scheme.lower(), dict(CHALLENGE_PARAM_RE.findall(params))


@dataclass
class _Token:
    value: str
    expires_at: float


class RegistryHook(BaseHook):
    """Ask a registry whether an image exists and what its manifest digest is.

    :param registry_conn_id: the ``faye_registry`` connection.
    :param timeout: seconds per HTTP request.
    :param attempts: how many times a request is tried when it fails transiently (connection errors,
        timeouts, 429, 502, 503, 504), under faye's one retry policy (faye_plugin.retries).
    """

    conn_name_attr = "registry_conn_id"
    default_conn_name = "faye_registry"
    conn_type = "faye_registry"
    hook_name = "faye: container registry (HTTP API v2)"

    def __init__(
        self, registry_conn_id: str = default_conn_name, *, timeout: float = 30.0, attempts: int = 4
    ) -> None:
        super().__init__()
        self.registry_conn_id = registry_conn_id
        self.timeout = timeout
        self.attempts = attempts
        self._session: requests.Session | None = None
        self._conn_url: tuple[str, str] | None = None
        self._credentials: tuple[str, str] | None = None
        self._tokens: dict[tuple[str, str], _Token] = {}

    # --- connection ---------------------------------------------------------------------------------

    def get_conn(self) -> requests.Session:
        """Return the (cached) HTTP session."""
        if self._session is None:
            self._session = requests.Session()
            self._session.headers["User-Agent"] = "faye-registry-hook"
        return self._session

    def _connection(self) -> tuple[str, str]:
        """Return (scheme, netloc) of the connection's registry, reading the connection once."""
        if self._conn_url is None:
            conn = self.get_connection(self.registry_conn_id)
            host = conn.host or ""
            if "://" in host:
                parts = urlsplit(host)
                scheme, netloc = parts.scheme, parts.netloc
            else:
                scheme, netloc = (conn.schema or "https"), host
            if conn.port and ":" not in netloc:
                netloc = f"{netloc}:{conn.port}"
            if not netloc:
                raise InvalidRequestError(f"connection {self.registry_conn_id!r} has no registry host")
            self._conn_url = (scheme, netloc)
            self._credentials = self._read_credentials(conn.login, conn.password, conn.extra_dejson)
        return self._conn_url

    @staticmethod
    def _read_credentials(
        login: str | None, password: str | None, extra: dict[str, Any]
    ) -> tuple[str, str] | None:
        gcp_conn_id = extra.get("gcp_conn_id")
        if gcp_conn_id:
            from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

            token = GoogleBaseHook(gcp_conn_id=gcp_conn_id)._get_access_token()
            return "oauth2accesstoken", token
        if login:
            return login, password or ""
        return None

    def _base_url(self, host: str | None) -> tuple[str, bool]:
        """Return the base URL for a repository host and whether the connection's credentials apply."""
        scheme, netloc = self._connection()
        if host is None or host == netloc:
            return f"{scheme}://{netloc}", True
        return f"https://{host}", False

    # --- HTTP ---------------------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send one request; only TRANSIENT_ERRORS and TRANSIENT_STATUS are tried again (bounded).

        After the last try a transient error becomes a RegistryError and a transient answer is
        returned as it is (the caller reports its status).
        """
        session = self.get_conn()
        policy = DEFAULT_POLICY.with_attempts(self.attempts)
        try:
            return policy.call(
                lambda: session.request(method, url, timeout=self.timeout, **kwargs),
                TRANSIENT_ERRORS,
                transient_result=lambda r: r.status_code in TRANSIENT_STATUS,
                what=f"{method} {url}",
                logger=self.log,
            )
        except TRANSIENT_ERRORS as exc:
            raise RegistryError(f"{method} {url} failed after {self.attempts} attempts: {exc}") from exc

    def _authorized(
        self, method: str, url: str, scope: str, use_credentials: bool, **kwargs: Any
    ) -> requests.Response:
        """Send a request; on a 401 challenge, obtain a token (or use Basic) and send it once more.

        Tokens are cached per (registry, scope) until shortly before they expire.
        """
        headers = dict(kwargs.pop("headers", {}))
        key = (urlsplit(url).netloc, scope)
        cached = self._tokens.get(key)
        if cached and cached.expires_at > time.time():
            headers["Authorization"] = f"Bearer {cached.value}"
        response = self._send(method, url, headers=headers, **kwargs)
        if response.status_code != 401:
            return response
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        credentials = self._credentials if use_credentials else None
        if scheme == "bearer" and "realm" in params:
            token = self._fetch_token(params, scope, credentials)
            self._tokens[key] = token
            headers["Authorization"] = f"Bearer {token.value}"
        elif scheme == "basic" and credentials:
            headers.pop("Authorization", None)
            kwargs["auth"] = credentials
        else:
            return response
        return self._send(method, url, headers=headers, **kwargs)

    def _fetch_token(
        self, challenge: dict[str, str], scope: str, credentials: tuple[str, str] | None
    ) -> _Token:
        """Get a Bearer token from the challenge's realm (with Basic credentials if any)."""
        realm = challenge["realm"]
        query: dict[str, str] = {}
        if challenge.get("service"):
            query["service"] = challenge["service"]
        wanted_scope = challenge.get("scope") or scope
        if wanted_scope:
            query["scope"] = wanted_scope
        response = self._send("GET", realm, params=query, auth=credentials)
        if response.status_code != 200:
            raise RegistryError(
                f"token request to {realm} ({query}) answered HTTP {response.status_code}: "
                f"{response.text[:500]}"
            )
        try:
            body = response.json()
            token = str(body.get("token") or body["access_token"])
            expires_in = int(body.get("expires_in") or 60)
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"token response from {realm} has no token: {response.text[:500]}") from exc
        return _Token(token, time.time() + max(expires_in - TOKEN_EXPIRY_MARGIN, 1))

    # --- API ----------------------------------------------------------------------------------------

    def get_manifest_digest(self, repository: str, reference: str) -> str | None:
        """Return the digest (``sha256:...``) of ``repository:reference``, or None if there is none.

        :param repository: ``[host[:port]/]name`` as in the catalogue's ``image``; without a host, or
            with the connection's host, the connection's URL and credentials are used; another host is
            reached over https without the connection's credentials.
        :param reference: a tag (e.g. the git sha) or a digest.
        :raises InvalidRequestError: the name or reference is malformed (nothing is sent).
        :raises RegistryError: the registry answered anything but found or not found.
        """
        host, name = split_repository(repository)
        check_reference(name, reference)
        base, use_credentials = self._base_url(host)
        url = f"{base}/v2/{name}/manifests/{reference}"
        scope = f"repository:{name}:pull"
        headers = {"Accept": MANIFEST_ACCEPT}
        response = self._authorized("HEAD", url, scope, use_credentials, headers=headers)
        if response.status_code == 404:
            return None
        if response.status_code == 200:
            digest = response.headers.get("Docker-Content-Digest")
            if digest:
                return digest
            response = self._authorized("GET", url, scope, use_credentials, headers=headers)
            if response.status_code == 200:
                return "sha256:" + hashlib.sha256(response.content).hexdigest()
        if not response.content:  # a HEAD has no body: ask again for the registry's own words
            response = self._authorized("GET", url, scope, use_credentials, headers=headers)
        raise RegistryError(
            f"HEAD {url} answered HTTP {response.status_code}: {response.text[:500] or '(no body)'}"
        )

    def image_exists(self, repository: str, reference: str) -> bool:
        """Return True if ``repository:reference`` exists in the registry."""
        return self.get_manifest_digest(repository, reference) is not None

    def test_connection(self) -> tuple[bool, str]:
        """Check that the registry answers ``GET /v2/`` (authenticating if it asks)."""
        try:
            base, use_credentials = self._base_url(None)
            url = f"{base}/v2/"
            response = self._authorized("GET", url, "", use_credentials)
        except Exception as exc:  # report, do not raise: this feeds the UI's "Test" button
            return False, f"{type(exc).__name__}: {exc}"
        if response.status_code == 200:
            return True, f"registry at {base} answered the v2 API"
        return False, f"GET {url} answered HTTP {response.status_code}: {response.text[:200]}"
