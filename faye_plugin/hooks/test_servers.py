"""Leases on the test servers: which test run holds which Docker host, kept on the host itself.

A test server holds its own lock. The lease is a container with a fixed name (``faye-lease``),
*created but never started*, from an image every test server has (``localhost/faye-base:latest`` on
the local stack; ``lease_image`` changes it). Its labels say who holds it and until when:

* ``faye.lease.holder``  ``<dag_id>/<run_id>/<task_id>/<try>`` of the holding task instance
* ``faye.lease.acquired`` and ``faye.lease.expires``  epoch seconds (machine state, read by faye;
  what a person reads, the task log and the XCom ``lease``, says UTC ISO times: ``Lease.to_dict``)

Creating a container whose name is taken fails atomically (Docker answers 409, podman 500 "already
in use"), so two test runs can never take the same server. Removing the container (by its id, only
by the holder) releases the lease.

A lease is held exactly while its holder is alive. For a task-instance holder that is the task
instance's state, asked of Airflow's REST API (``faye_plugin.hooks.lease_holders``): once that try no
longer runs (it failed, was killed with SIGKILL, was retried), the lease is *stale*, whatever its
``expires`` says; while it runs, the lease is never taken, however old. Only a holder that is not a
task instance (a person or a test holding a server by hand) is judged by ``expires``. A stale lease
may be taken over by anyone: remove *that* container by id and the dead holder's test containers,
then create a new one (if two take over at once, one create wins and the other sees "taken").

No new database: the lock lives on the server it guards, its life is the holder's task instance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import requests
from docker import APIClient
from docker.errors import APIError, DockerException, NotFound

from faye_plugin.catalogue import DockerHost
from faye_plugin.exceptions import TestServerUnavailableError
from faye_plugin.hooks.lease_holders import LeaseHolderHook, TaskHolder
from faye_plugin.timestamps import utc_iso

LEASE_NAME = "faye-lease"
DEFAULT_LEASE_IMAGE = "localhost/faye-base:latest"
LABEL_HOLDER = "faye.lease.holder"
LABEL_ACQUIRED = "faye.lease.acquired"
LABEL_EXPIRES = "faye.lease.expires"
#: Label put on the test containers themselves, naming the lease holder that started them.
LABEL_TEST_HOLDER = "faye.test.holder"

#: Errors talking to a server: it is down, or refuses (TLS settings, a missing image, an HTTP error).
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    DockerException,
    OSError,
)


@dataclass(frozen=True)
class Lease:
    """One test server held by one test run until ``expires`` (epoch seconds)."""

    server: str
    holder: str
    acquired: float
    expires: float
    container_id: str

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires

    @property
    def task_holder(self) -> TaskHolder | None:
        """The task instance holding this lease; None when the holder is not one."""
        return TaskHolder.parse(self.holder)

    def to_dict(self) -> dict[str, Any]:
        """The lease as a person reads it (the XCom ``lease``): times as UTC ISO to the millisecond."""
        return {
            "server": self.server,
            "holder": self.holder,
            "acquired": utc_iso(self.acquired, millis=True),
            "expires": utc_iso(self.expires, millis=True),
            "container_id": self.container_id,
        }


def lease_labels(holder: str, acquired: float, ttl_seconds: float) -> dict[str, str]:
    """Return the labels of a lease container taken by ``holder`` at ``acquired`` for ``ttl_seconds``."""
    return {
        LABEL_HOLDER: holder,
        LABEL_ACQUIRED: f"{acquired:.3f}",
        LABEL_EXPIRES: f"{acquired + ttl_seconds:.3f}",
    }


def lease_from_labels(server: str, container_id: str, labels: dict[str, str] | None) -> Lease:
    """Read a lease back from its container's labels; a lease without a valid expiry is expired."""
    labels = labels or {}

    def _num(key: str) -> float:
        try:
            return float(labels.get(key, "0"))
        except ValueError:
            return 0.0

    return Lease(
        server=server,
        holder=labels.get(LABEL_HOLDER, ""),
        acquired=_num(LABEL_ACQUIRED),
        expires=_num(LABEL_EXPIRES),
        container_id=container_id,
    )


def _gone(err: APIError) -> bool:
    """podman answers 500 "no such container" for a container removed while it looked it up."""
    return isinstance(err, NotFound) or "no such container" in str(getattr(err, "explanation", "") or err)


def _name_taken(err: APIError) -> bool:
    explanation = str(getattr(err, "explanation", "") or err)
    return err.status_code == 409 or "already in use" in explanation


class TestServerHook:
    """Take, inspect and release the lease of one test server through its Docker Engine API.

    :param server: the test server from the catalogue (Docker URL and TLS settings).
    :param lease_image: an image the server already has; the lease container is created from it.
    :param timeout: seconds for each Docker API call.
    :param holders: asks Airflow whether a task-instance holder still runs (one is made on demand).
    """

    __test__ = False  # not a pytest test class
    hook_name = "faye: test server leases"

    def __init__(
        self,
        server: DockerHost,
        lease_image: str = DEFAULT_LEASE_IMAGE,
        timeout: int = 30,
        holders: LeaseHolderHook | None = None,
    ) -> None:
        self.server = server
        self.lease_image = lease_image
        self.timeout = timeout
        self._holders = holders

    @property
    def holders(self) -> LeaseHolderHook:
        if self._holders is None:
            self._holders = LeaseHolderHook()
        return self._holders

    def is_stale(self, lease: Lease, now: float | None = None) -> bool:
        """Whether ``lease``'s holder is gone: its task instance no longer runs that try (or, for a
        holder that is not a task instance, ``expires`` has passed). Never by age for a task."""
        task = lease.task_holder
        if task is None:
            return lease.expired(now)
        return not self.holders.is_alive(task)

    @cached_property
    def client(self) -> APIClient:
        """Return the (cached) low-level Docker client of this server."""
        from airflow.providers.docker.hooks.docker import DockerHook

        tls = DockerHook.construct_tls_config(
            ca_cert=self.server.tls_ca_cert,
            client_cert=self.server.tls_client_cert,
            client_key=self.server.tls_client_key,
            verify=self.server.tls_verify,
        )
        return APIClient(base_url=self.server.docker_url, version="auto", tls=tls, timeout=self.timeout)

    def current_lease(self) -> Lease | None:
        """Return the lease the server holds now, or None when it is free."""
        try:
            info = self.client.inspect_container(LEASE_NAME)
        except APIError as err:
            if _gone(err):
                return None
            raise
        return lease_from_labels(self.server.name, info["Id"], (info.get("Config") or {}).get("Labels"))

    def try_acquire(self, holder: str, ttl_seconds: float) -> Lease | None:
        """Take the server for ``holder`` for ``ttl_seconds``; return None when someone else holds it.

        A stale lease (its holder no longer runs, see ``is_stale``) is taken over. Taking a lease the
        same holder already has returns it renewed (a resumed task instance asks again).
        """
        for _ in range(2):
            current = self.current_lease()  # a cheap look first: a create on a taken name is slow
            now = time.time()
            if current is not None:
                if current.holder != holder and not self.is_stale(current, now):
                    return None
                self._remove(current.container_id)
                if current.holder != holder:
                    self.remove_test_containers(current.holder)
            labels = lease_labels(holder, now, ttl_seconds)
            try:
                created = self.client.create_container(
                    self.lease_image, command=["true"], name=LEASE_NAME, labels=labels
                )
            except APIError as err:
                if not _name_taken(err):
                    raise
                continue  # someone else created it between our look and our create: look again
            # ``acquired`` is when the server confirmed the lease (the create answered), not when we
            # looked: a create can take seconds on a busy host, and a holder's [acquired, released]
            # must lie inside the time it really held the server.
            held = lease_from_labels(self.server.name, created["Id"], labels)
            return replace(held, acquired=time.time())
        return None

    def release(self, lease: Lease) -> bool:
        """Release ``lease`` if the server still holds exactly it; return whether it was removed."""
        current = self.current_lease()
        if current is None or current.container_id != lease.container_id:
            return False
        return self._remove(lease.container_id)

    def remove_test_containers(self, holder: str) -> int:
        """Force-remove test containers started by ``holder`` (left behind by a killed holder)."""
        removed = 0
        for container in self.client.containers(all=True, filters={"label": f"{LABEL_TEST_HOLDER}={holder}"}):
            if self._remove(container["Id"]):
                removed += 1
        return removed

    def _remove(self, container_id: str) -> bool:
        try:
            self.client.remove_container(container_id, force=True)
        except APIError as err:
            if _gone(err):
                return False
            raise
        return True


def acquire_any(
    servers: tuple[DockerHost, ...] | list[DockerHost],
    holder: str,
    ttl_seconds: float,
    lease_image: str = DEFAULT_LEASE_IMAGE,
    timeout: int = 30,
    *,
    busy: list[DockerHost] | None = None,
    holders: LeaseHolderHook | None = None,
) -> tuple[TestServerHook, Lease] | None:
    """Lease the first free server of ``servers`` (in catalogue order); None when all are held.

    Returns the server's hook (its ``server`` and a connected ``client``, reusable for the test) and
    the lease. A server that cannot be reached or refuses the lease (no lease image, TLS settings, an
    HTTP error) is skipped: it cannot run a test either. When no server is held by another test, waiting
    cannot help: TestServerUnavailableError names every server and what went wrong. ``busy``, if
    given, receives the servers held by other tests (the ones worth waiting for).
    """
    problems: dict[str, str] = {}
    holders = holders or LeaseHolderHook()
    for server in servers:
        hook = TestServerHook(server, lease_image=lease_image, timeout=timeout, holders=holders)
        try:
            lease = hook.try_acquire(holder, ttl_seconds)
        except UNREACHABLE_ERRORS as err:
            problems[server.name] = f"{type(err).__name__}: {err}"
            continue
        if lease is not None:
            return hook, lease
        if busy is not None:
            busy.append(server)
    if len(problems) == len(servers):
        detail = "; ".join(f"{name}: {why}" for name, why in problems.items())
        raise TestServerUnavailableError(f"no test server can take a lease ({detail})")
    return None


def free_servers(
    servers: tuple[DockerHost, ...] | list[DockerHost],
    lease_image: str = DEFAULT_LEASE_IMAGE,
    holders: LeaseHolderHook | None = None,
) -> list[str]:
    """Return the names of the servers whose lease is absent or stale (unreachable ones excluded)."""
    free: list[str] = []
    now = time.time()
    holders = holders or LeaseHolderHook()
    for server in servers:
        hook = TestServerHook(server, lease_image=lease_image, holders=holders)
        try:
            lease = hook.current_lease()
        except UNREACHABLE_ERRORS:
            continue
        if lease is None or hook.is_stale(lease, now):
            free.append(server.name)
    return free
