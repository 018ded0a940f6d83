"""Run a service's tests against its preview on a leased test server (the docker provider's operator)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.docker.exceptions import DockerContainerFailedException
from airflow.providers.docker.operators.docker import DockerOperator

from faye_plugin.catalogue import DockerHost, ServiceSpec, load_catalogue
from faye_plugin.exceptions import TestServerUnavailableError, TestsFailedError
from faye_plugin.hooks.git import GitSourceHook
from faye_plugin.hooks.test_servers import (
    DEFAULT_LEASE_IMAGE,
    LABEL_TEST_HOLDER,
    UNREACHABLE_ERRORS,
    Lease,
    TestServerHook,
    acquire_any,
)
from faye_plugin.timestamps import seconds_text, utc_iso
from faye_plugin.triggers.test_servers import TestServerFreeTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context
    from docker import APIClient


def resolve_test_image(spec: ServiceSpec, git_sha: str) -> str:
    """Return the image the tests run in: the catalogue's ``test.image``, where ``{{ image }}`` or the
    bare service repository means the service image built at ``git_sha``."""
    assert spec.test is not None
    image = spec.test.image.replace("{{ image }}", spec.image).strip()
    if image == spec.image:
        return f"{spec.image}:{git_sha}"
    return image


def extra_hosts_for(url: str) -> dict[str, str]:
    """Map a ``*.localhost`` preview host to 127.0.0.1 inside the container (busybox does not)."""
    host = urlsplit(url).hostname or ""
    return {host: "127.0.0.1"} if host == "localhost" or host.endswith(".localhost") else {}


NOT_EXITED = frozenset({"created", "configured", "initialized", "running", "paused"})
SHORT_SHA = 7


def result_line(
    *,
    passed: bool,
    exit_code: int | None,
    server: str,
    seconds: float,
    service: str,
    pr: str | int,
    git_sha: str,
    timed_out_after: str | None = None,
) -> str:
    """The one line that says how a test run ended, e.g. ``tests passed: exit code 0 on test server
    test-1 in 3.2 s (hello PR 7 at 74b5f9f)``; a timeout says ``tests timed out after 2 min``."""
    code = "no exit code" if exit_code is None else f"exit code {exit_code}"
    if timed_out_after:
        word = f"tests timed out after {timed_out_after} (stopped)"
    else:
        word = "tests passed" if passed else "tests failed"
    what = f"{service} PR {pr} at {git_sha[:SHORT_SHA]}"
    return f"{word}: {code} on test server {server} in {seconds_text(seconds)} ({what})"


class ExitPollingClient:
    """The Docker client with a ``wait`` that polls the container's state.

    podman 4.3's compat ``POST /containers/{id}/wait`` answers about 20 s after the container exited
    (measured on the local stack: ``inspect`` says exited at once). A test server is held for that
    long for nothing, so ``wait`` asks ``inspect`` instead; with Docker the answer is the same.
    Everything else is the docker SDK's ``APIClient``.
    """

    def __init__(
        self,
        client: APIClient,
        poll_interval: float = 0.2,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self._client = client
        self._poll_interval = poll_interval
        self._on_exit = on_exit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def wait(self, container: str | dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        while True:
            state = self._client.inspect_container(container)["State"]
            if not state.get("Running") and str(state.get("Status", "")).lower() not in NOT_EXITED:
                code = int(state.get("ExitCode", -1))
                if self._on_exit is not None:
                    self._on_exit(code)
                return {"StatusCode": code, "Error": state.get("Error") or None}
            time.sleep(self._poll_interval)


class TestRunnerOperator(DockerOperator):
    """Lease a free test server, run the service's test image and command there, release the lease.

    Runs in the pool ``faye_test_servers`` (one slot per server), which bounds how many tests run at
    once; the lease (see ``faye_plugin.hooks.test_servers``) picks *which* server. If no server is free
    although the pool let the task in (a killed holder's task not yet failed), the task defers to
    ``TestServerFreeTrigger`` and tries again when a server frees up. The lease is released in
    ``finally`` and in ``on_kill``. The container's output (stdout and stderr) streams into the task
    log line by line as it is printed; then one result line says how it ended (``tests passed: exit
    code 0 on test server test-1 in 3.2 s (hello PR 7 at 74b5f9f)``). A failing test (non-zero exit)
    raises ``TestsFailedError`` with that line as its message: an expected failure, logged as that one
    line without a traceback (``faye_plugin.task_errors``) and named in the run note. The test is
    stopped after the catalogue's ``test.timeout_minutes`` (``tests timed out after ...``).

    The container gets ``PREVIEW_URL``, ``GIT_SHA``, ``PR`` and ``SERVICE`` in its environment and runs
    on the host network, with the preview's ``*.localhost`` name mapped to 127.0.0.1.

    An XCom ``lease`` records ``{"server", "holder", "acquired", "expires", "released",
    "container_id"}``, times as UTC ISO to the millisecond (``2026-12-02T01:02:03.123Z``). The task's
    return value is the result: ``{"passed", "exit_code", "server", "started", "ended", "seconds",
    "last_line"}``.

    :param service: the service. (templated)
    :param git_sha: the commit under test. (templated)
    :param pr: the pull request number. (templated)
    :param preview_url: the preview's URL as the proxy serves it. (templated)
    :param lease_image: an image every test server has, for the lease container. (templated)
    :param lease_poll_interval: seconds between two looks for a free server while deferred.
    """

    __test__ = False
    template_fields = (
        *DockerOperator.template_fields,
        "service",
        "git_sha",
        "pr",
        "preview_url",
        "lease_image",
    )

    def __init__(
        self,
        *,
        service: str,
        git_sha: str,
        pr: str | int,
        preview_url: str,
        lease_image: str = DEFAULT_LEASE_IMAGE,
        lease_poll_interval: float = 1.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("image", "from-the-catalogue")
        kwargs.setdefault("mount_tmp_dir", False)
        kwargs.setdefault("network_mode", "host")
        kwargs.setdefault("auto_remove", "force")
        super().__init__(**kwargs)
        self.service = service
        self.git_sha = git_sha
        self.pr = pr
        self.preview_url = preview_url
        self.lease_image = lease_image
        self.lease_poll_interval = lease_poll_interval
        self._lease: Lease | None = None
        self._server: DockerHost | None = None
        self._timed_out = False
        self._released_at: float | None = None
        self._full_sha: str | None = None
        self._client: APIClient | None = None
        self._lease_hook: TestServerHook | None = None
        self._exit_code: int | None = None

    @property
    def cli(self) -> Any:
        """The leased server's client (already connected by the lease: no second ping/version round
        trip while the server is held), or the provider's hook when a registry login is asked for."""
        leased = self._client is not None and not self.docker_conn_id
        client = self._client if leased else self.hook.api_client
        return ExitPollingClient(client, on_exit=self._record_exit)

    def _record_exit(self, code: int) -> None:
        self._exit_code = code

    def execute(self, context: Context) -> Any:
        catalogue = load_catalogue()
        spec = catalogue.service(self.service)
        if spec.test is None:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"service {spec.name!r} declares no tests")
        if not catalogue.test_servers:
            raise TestServerUnavailableError("the catalogue declares no test_servers")
        # image tags carry the full sha: resolve a short one before holding a server (GIT_SHA in the
        # container stays the sha the request named, as the deploy sets it in the preview)
        self._full_sha = GitSourceHook(spec.build.git_url).resolve(self.git_sha)
        ti = context["ti"]
        holder = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.try_number}"
        timeout = spec.test.timeout_minutes * 60
        busy: list[DockerHost] = []
        # The lease lives while this task instance does (its state, read by whoever wants the server);
        # ``expires`` only records the test's own timeout.
        taken = acquire_any(
            catalogue.test_servers,
            holder,
            timeout,
            self.lease_image,
            self.timeout,
            busy=busy,
        )
        if taken is None:
            # Only the servers other tests hold are waited for: one that failed to lease would look
            # free to the trigger at once, and the wait would spin.
            self.log.info("no free test server: waiting (deferred) for %s", ", ".join(s.name for s in busy))
            self.defer(
                trigger=TestServerFreeTrigger.for_hosts(
                    tuple(busy), self.lease_image, self.lease_poll_interval
                ),
                method_name="execute_after_wait",
            )
        assert taken is not None
        self._lease_hook, self._lease = taken
        self._server, self._client = self._lease_hook.server, self._lease_hook.client
        lease = self._lease
        self.log.info(
            "leased test server %s at %s (held while this task runs; the tests may run until %s)",
            self._server.name,
            utc_iso(lease.acquired),
            utc_iso(lease.expires),
        )
        watchdog = threading.Timer(timeout, self._stop_on_timeout)
        watchdog.daemon = True
        started = time.time()
        try:  # from here on, whatever happens, the lease is released
            ti.xcom_push(key="lease", value=lease.to_dict())
            self._configure(spec, self._server, holder)
            self.log.info(
                "running the tests of %s: %s in %s on test server %s against %s",
                spec.name,
                " ".join(self.command or []),
                self.image,
                self._server.name,
                self.preview_url,
            )
            watchdog.start()
            started = time.time()
            try:
                last_line = super().execute(context)
            except DockerContainerFailedException:
                line = self._result_line(spec, passed=False, started=started, ended=time.time())
                raise TestsFailedError(line) from None
            ended = time.time()
            self.log.info("%s", self._result_line(spec, passed=True, started=started, ended=ended))
            return {
                "passed": True,
                "exit_code": self._exit_code,
                "server": self._server.name,
                "started": utc_iso(started, millis=True),
                "ended": utc_iso(ended, millis=True),
                "seconds": round(ended - started, 3),
                "last_line": last_line if isinstance(last_line, str) else None,
            }
        finally:
            watchdog.cancel()
            released = self._release() or self._released_at
            record = {**lease.to_dict(), "released": utc_iso(released, millis=True) if released else None}
            ti.xcom_push(key="lease", value=record)

    def _result_line(self, spec: ServiceSpec, *, passed: bool, started: float, ended: float) -> str:
        assert spec.test is not None
        return result_line(
            passed=passed,
            exit_code=self._exit_code,
            server=self._server.name if self._server else "?",
            seconds=ended - started,
            service=spec.name,
            pr=self.pr,
            git_sha=self.git_sha,
            timed_out_after=f"{spec.test.timeout_minutes} min" if self._timed_out else None,
        )

    def execute_after_wait(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after ``TestServerFreeTrigger`` fired: try to lease again (and defer again if beaten)."""
        if event:
            self.log.info("test server(s) %s free after %ss", event.get("servers"), event.get("waited"))
        return self.execute(context)

    def _configure(self, spec: ServiceSpec, server: DockerHost, holder: str) -> None:
        assert spec.test is not None
        self.docker_url = server.docker_url
        self.tls_ca_cert = server.tls_ca_cert
        self.tls_client_cert = server.tls_client_cert
        self.tls_client_key = server.tls_client_key
        self.tls_verify = server.tls_verify
        self.image = resolve_test_image(spec, self._full_sha or self.git_sha)
        self.command = list(spec.test.command)
        self.environment = {
            **self.environment,
            "PREVIEW_URL": self.preview_url,
            "GIT_SHA": self.git_sha,
            "PR": str(self.pr),
            "SERVICE": spec.name,
        }
        self.extra_hosts = {**(self.extra_hosts or {}), **extra_hosts_for(self.preview_url)}
        labels = self.labels if isinstance(self.labels, dict) else {}
        self.labels = {**labels, LABEL_TEST_HOLDER: holder}

    def _stop_on_timeout(self) -> None:
        self._timed_out = True
        if self.container:
            self.log.error("test timeout reached: stopping the test container")
            self.cli.stop(self.container["Id"], timeout=5)

    def _release(self) -> float | None:
        """Release the lease (once); return when, or None if it was no longer ours."""
        lease, server = self._lease, self._server
        if lease is None or server is None:
            return None
        self._lease = None
        hook = self._lease_hook or TestServerHook(server, lease_image=self.lease_image)
        releasing_at = time.time()  # before the remove: the server is held until it answers
        if hook.release(lease):
            self._released_at = releasing_at
            self.log.info(
                "released test server %s at %s (held %s)",
                server.name,
                utc_iso(self._released_at),
                seconds_text(self._released_at - lease.acquired),
            )
            return self._released_at
        self.log.warning("the lease on %s was no longer ours (taken over as stale?)", server.name)
        return None

    def on_kill(self) -> None:
        """Remove the test container at once (force: no stop grace) and release the lease.

        Airflow gives a killed task a few seconds before SIGKILL (measured: 5 s), so nothing here may
        wait: ``stop`` would spend its whole grace period on a shell that ignores SIGTERM.
        """
        try:
            if self.container is not None:
                self.log.info("killed: removing the test container")
                try:
                    self.cli.remove_container(self.container["Id"], force=True)
                except UNREACHABLE_ERRORS as err:  # APIError is a DockerException
                    self.log.warning("could not remove the test container: %s", err)
        finally:
            self._release()
