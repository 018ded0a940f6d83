"""The proxy hook: one route per slot in Caddy, through its admin API (by ``@id``).

A slot is a stable hostname (``<slot>.<domain>``) that one preview holds at a time. Its route sends
requests to the preview's own URL (the Cloud Run tag URL, or the emulator's front door) with the
``Host`` header that URL needs, and tells who holds the slot in ``X-Faye-*`` response headers: the
route itself is the record of which preview holds the slot, readable back with no other state.

Connection (conn_type ``faye_proxy``): host = the admin API URL (``http://127.0.0.1:28702``); extras
``server`` (the Caddy HTTP server's name, default ``previews``), ``domain`` (default
``preview.localhost``) and ``public_url`` (e.g. ``http://{slot}.preview.localhost:28701``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from airflow.sdk import BaseHook

from faye_plugin.exceptions import InvalidRequestError, ProxyError
from faye_plugin.retries import DEFAULT_POLICY

ROUTE_ID_PREFIX = "faye-slot-"
SLOT_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (requests.ConnectionError,)
MAX_DUPLICATES = 20  # Caddy 2.6 does not enforce unique @id; never loop forever cleaning up

# response header -> SlotRoute field
HEADER_FIELDS = {
    "X-Faye-Slot": "slot",
    "X-Faye-Service": "service",
    "X-Faye-Pr": "pr",
    "X-Faye-Sha": "sha",
    "X-Faye-Revision": "revision",
    "X-Faye-Tag": "tag",
    "X-Faye-Upstream": "upstream_url",
}


@dataclass(frozen=True)
class SlotRoute:
    """Which preview holds a slot, and where its requests go."""

    slot: str
    hostname: str
    upstream_url: str
    service: str
    pr: int
    sha: str
    revision: str
    tag: str


def route_id(slot: str) -> str:
    """Return the ``@id`` of a slot's route."""
    return f"{ROUTE_ID_PREFIX}{slot}"


def upstream_dial(upstream_url: str) -> tuple[str, str, bool]:
    """Return (dial address, Host header, use TLS) for an upstream URL.

    ``*.localhost`` hosts are dialled at 127.0.0.1 (they name a tag on the local emulator's front
    door, which picks the tag from the Host header). https upstreams (real Cloud Run) use TLS.
    """
    parts = urlsplit(upstream_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(f"upstream {upstream_url!r} is not an http(s) URL")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname
    dial_host = "127.0.0.1" if host == "localhost" or host.endswith(".localhost") else host
    host_header = parts.netloc.rsplit("@", 1)[-1]
    if parts.port in (None, 443 if tls else 80):
        host_header = host
    return f"{dial_host}:{port}", host_header, tls


def route_json(route: SlotRoute) -> dict[str, Any]:
    """Return the Caddy route object of ``route`` (with its ``@id``)."""
    dial, host_header, tls = upstream_dial(route.upstream_url)
    proxy: dict[str, Any] = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": dial}],
        "headers": {"request": {"set": {"Host": [host_header]}}},
    }
    if tls:
        proxy["transport"] = {"protocol": "http", "tls": {"server_name": host_header.split(":")[0]}}
    labels = {header: [str(getattr(route, field))] for header, field in HEADER_FIELDS.items()}
    return {
        "@id": route_id(route.slot),
        "match": [{"host": [route.hostname]}],
        "handle": [{"handler": "headers", "response": {"set": labels}}, proxy],
        "terminal": True,
    }


def route_from_json(data: dict[str, Any]) -> SlotRoute | None:
    """Read a SlotRoute back from a Caddy route object; None if it is not a complete faye slot route."""
    if not str(data.get("@id", "")).startswith(ROUTE_ID_PREFIX):
        return None
    values: dict[str, str] = {}
    for handler in data.get("handle") or []:
        if handler.get("handler") == "headers":
            for header, field in HEADER_FIELDS.items():
                found = ((handler.get("response") or {}).get("set") or {}).get(header)
                if found:
                    values[field] = str(found[0])
    try:
        hostname = str(data["match"][0]["host"][0])
        return SlotRoute(
            slot=values["slot"],
            hostname=hostname,
            upstream_url=values["upstream_url"],
            service=values["service"],
            pr=int(values["pr"]),
            sha=values["sha"],
            revision=values["revision"],
            tag=values["tag"],
        )
    except (KeyError, IndexError, TypeError, ValueError):
        return None


class ProxyHook(BaseHook):
    """Upsert, read and delete the route of one slot in Caddy, idempotently.

    :param proxy_conn_id: the ``faye_proxy`` connection.
    :param timeout: seconds per admin API request.
    :param attempts: tries per request when the admin API cannot be reached (faye_plugin.retries).
    """

    conn_name_attr = "proxy_conn_id"
    default_conn_name = "faye_proxy"
    conn_type = "faye_proxy"
    hook_name = "faye: preview proxy (Caddy admin API)"

    def __init__(
        self, proxy_conn_id: str = default_conn_name, *, timeout: float = 10.0, attempts: int = 3
    ) -> None:
        super().__init__()
        self.proxy_conn_id = proxy_conn_id
        self.timeout = timeout
        self.attempts = attempts
        self._session: requests.Session | None = None
        self._settings: dict[str, str] | None = None

    # --- connection ---------------------------------------------------------------------------------

    def get_conn(self) -> requests.Session:
        """Return the (cached) HTTP session."""
        if self._session is None:
            self._session = requests.Session()
        return self._session

    @property
    def settings(self) -> dict[str, str]:
        """The connection's admin URL, server name, domain and public URL template (read once)."""
        if self._settings is None:
            conn = self.get_connection(self.proxy_conn_id)
            host = (conn.host or "").rstrip("/")
            if not host:
                raise InvalidRequestError(f"connection {self.proxy_conn_id!r} has no admin API URL (host)")
            if "://" not in host:
                host = f"{conn.schema or 'http'}://{host}"
            if conn.port and urlsplit(host).port is None:
                host = f"{host}:{conn.port}"
            extra = conn.extra_dejson
            domain = str(extra.get("domain") or "preview.localhost").strip(".")
            self._settings = {
                "admin_url": host,
                "server": str(extra.get("server") or "previews"),
                "domain": domain,
                "public_url": str(extra.get("public_url") or f"http://{{slot}}.{domain}"),
            }
        return self._settings

    def slot_hostname(self, slot: str) -> str:
        """Return the hostname of a slot (``<slot>.<domain>``)."""
        if not SLOT_RE.match(slot):
            raise InvalidRequestError(f"slot {slot!r} is not a lowercase DNS label")
        return f"{slot}.{self.settings['domain']}"

    def slot_url(self, slot: str) -> str:
        """Return the public URL of a slot (the connection's ``public_url`` with ``{slot}`` filled in)."""
        self.slot_hostname(slot)
        return self.settings["public_url"].format(slot=slot)

    # --- HTTP ---------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> requests.Response:
        """Send one admin API request; only TRANSIENT_ERRORS (unreachable) are tried again."""
        url = f"{self.settings['admin_url']}{path}"
        policy = DEFAULT_POLICY.with_attempts(self.attempts)
        try:
            return policy.call(
                lambda: self.get_conn().request(method, url, json=body, timeout=self.timeout),
                TRANSIENT_ERRORS,
                what=f"{method} {url}",
                logger=self.log,
            )
        except TRANSIENT_ERRORS as exc:
            raise ProxyError(f"{method} {url}: admin API unreachable: {exc}") from exc

    def _expect(self, response: requests.Response, *ok: int) -> requests.Response:
        if response.status_code not in ok:
            raise ProxyError(
                f"{response.request.method} {response.url} answered HTTP {response.status_code}: "
                f"{response.text[:500]}"
            )
        return response

    @property
    def _routes_path(self) -> str:
        return f"/config/apps/http/servers/{self.settings['server']}/routes"

    def _routes(self) -> list[Any] | None:
        """The server's routes; None when the server has no ``routes`` key yet."""
        routes = self._expect(self._request("GET", self._routes_path), 200).json()
        return routes if isinstance(routes, list) else None

    def _create(self, body: dict[str, Any], routes: list[Any] | None) -> None:
        """Insert a route first (ahead of any catch-all); Caddy needs another verb for an empty list."""
        if routes is None:
            self._expect(self._request("PUT", self._routes_path, [body]), 200)
        elif not routes:
            self._expect(self._request("POST", self._routes_path, body), 200)
        else:
            self._expect(self._request("PUT", f"{self._routes_path}/0", body), 200)

    # --- API ----------------------------------------------------------------------------------------

    def get_slot_route(self, slot: str) -> SlotRoute | None:
        """Return who holds ``slot`` according to its route, or None if the slot has no route."""
        self.slot_hostname(slot)
        response = self._request("GET", f"/id/{route_id(slot)}")
        if response.status_code == 404:
            return None
        return route_from_json(self._expect(response, 200).json())

    def list_slot_routes(self) -> list[SlotRoute]:
        """Return every slot route of the server (one per slot, in route order)."""
        routes = self._expect(self._request("GET", self._routes_path), 200).json() or []
        found: dict[str, SlotRoute] = {}
        for data in routes:
            route = route_from_json(data) if isinstance(data, dict) else None
            if route is not None and route.slot not in found:
                found[route.slot] = route
        return list(found.values())

    def upsert_slot_route(self, route: SlotRoute) -> None:
        """Create or replace the route of ``route.slot``; calling it twice leaves one route.

        Replace = PATCH ``/id/faye-slot-<slot>`` with the full object (``@id`` included, or Caddy drops
        the id). Create = PUT at ``routes/0``, ahead of the catch-all fallback (or, on a server with no
        routes yet, PUT/POST of the list). Caddy 2.6 does not keep
        ``@id`` unique, so two racing creates could leave two routes: afterwards extras are deleted
        and the survivor is written once more, so the last writer wins and one route remains.
        """
        expected = self.slot_hostname(route.slot)
        if route.hostname != expected:
            raise InvalidRequestError(
                f"route hostname {route.hostname!r} is not slot {route.slot!r}'s hostname {expected!r}"
            )
        body = route_json(route)
        path = f"/id/{route_id(route.slot)}"
        routes = self._routes()
        if any(isinstance(r, dict) and r.get("@id") == body["@id"] for r in routes or []):
            self._expect(self._request("PATCH", path, body), 200)
        else:
            self._create(body, routes)
        routes = self._routes()
        count = sum(1 for r in routes or [] if isinstance(r, dict) and r.get("@id") == body["@id"])
        if count > 1:
            self.log.warning("Slot %s has %d routes with one @id; removing the extras", route.slot, count)
            for _ in range(min(count - 1, MAX_DUPLICATES)):
                self._expect(self._request("DELETE", path), 200)
            self._expect(self._request("PATCH", path, body), 200)
        elif count == 0:  # deleted between our write and the re-read: write it again
            self._create(body, routes)

    def delete_slot_route(self, slot: str) -> bool:
        """Delete the route of ``slot`` (every copy); return True if something was removed."""
        self.slot_hostname(slot)
        removed = False
        for _ in range(MAX_DUPLICATES):
            response = self._request("DELETE", f"/id/{route_id(slot)}")
            if response.status_code == 404:
                return removed
            self._expect(response, 200)
            removed = True
        raise ProxyError(f"slot {slot}: still has a route after {MAX_DUPLICATES} deletes")

    def test_connection(self) -> tuple[bool, str]:
        """Check that the admin API answers and has the connection's HTTP server."""
        try:
            response = self._request("GET", f"/config/apps/http/servers/{self.settings['server']}")
        except Exception as exc:  # report, do not raise: this feeds the UI's "Test" button
            return False, f"{type(exc).__name__}: {exc}"
        if response.status_code == 200 and response.json():
            return True, f"Caddy at {self.settings['admin_url']} has server {self.settings['server']!r}"
        return False, f"Caddy has no server {self.settings['server']!r} (HTTP {response.status_code})"
