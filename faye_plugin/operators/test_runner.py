"""Run a service's tests against its preview on a leased test server (the docker provider's operator)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.docker.exceptions import DockerContainerFailedException
from airflow.providers.docker.operators.docker import DockerOperator

from faye_plugin.catalogue import DockerHost, ServiceSpec, load_catalogue
from faye_plugin.exceptions import TestServerUnavailableError
from faye_plugin.hooks.git import GitSourceHook
from faye_plugin.hooks.test_servers import (
    DEFAULT_LEASE_IMAGE,
    LABEL_TEST_HOLDER,
    UNREACHABLE_ERRORS,
    Lease,
    TestServerHook,
    acquire_any,
)
from faye_plugin.triggers.test_servers import TestServerFreeTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context
    from docker import APIClient

#: Seconds a lease outlives the test's own timeout before anyone may take it over.
LEASE_GRACE_SECONDS = 120


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


class ExitPollingClient:
    """The Docker client with a ``wait`` that polls the container's state.

    podman 4.3's compat ``POST /containers/{id}/wait`` answers about 20 s after the container exited
    (measured on the local stack: ``inspect`` says exited at once). A test server is held for that
    long for nothing, so ``wait`` asks ``inspect`` instead; with Docker the answer is the same.
    Everything else is the docker SDK's ``APIClient``.
    """

    def __init__(self, client: APIClient, poll_interval: float = 0.2) -> None:
        self._client = client
        self._poll_interval = poll_interval

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def wait(self, container: str | dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        while True:
            state = self._client.inspect_container(container)["State"]
            if not state.get("Running") and str(state.get("Status", "")).lower() not in NOT_EXITED:
                return {"StatusCode": int(state.get("ExitCode", -1)), "Error": state.get("Error") or None}
            time.sleep(self._poll_interval)


class TestRunnerOperator(DockerOperator):
    """Lease a free test server, run the service's test image and command there, release the lease.

    Runs in the pool ``faye_test_servers`` (one slot per server), which bounds how many tests run at
    once; the lease (see ``faye_plugin.hooks.test_servers``) picks *which* server. If no server is free
    although the pool let the task in (a killed holder's lease has not expired yet), the task defers to
    ``TestServerFreeTrigger`` and tries again when a server frees up. The lease is released in
    ``finally`` and in ``on_kill``; the container's output streams into the task log and its exit code
    decides the task's state. The test is stopped after the catalogue's ``test.timeout_minutes``.

    The container gets ``PREVIEW_URL``, ``GIT_SHA``, ``PR`` and ``SERVICE`` in its environment and runs
    on the host network, with the preview's ``*.localhost`` name mapped to 127.0.0.1.

    An XCom ``lease`` records ``{"server", "holder", "acquired", "released", ...}``.

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

    @property
    def cli(self) -> Any:
        """The leased server's client (already connected by the lease: no second ping/version round
        trip while the server is held), or the provider's hook when a registry login is asked for."""
        if self._client is not None and not self.docker_conn_id:
            return ExitPollingClient(self._client)
        return ExitPollingClient(self.hook.api_client)

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
        taken = acquire_any(
            catalogue.test_servers,
            holder,
            timeout + LEASE_GRACE_SECONDS,
            self.lease_image,
            self.timeout,
            busy=busy,
        )
        if taken is None:
            # Only the servers other tests hold are waited for: one that failed to lease would look
            # free to the trigger at once, and the wait would spin.
            self.log.info(
                "no free test server: waiting (deferred) for %s", ", ".join(s.name for s in busy)
            )
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
        self.log.info("leased test server %s (until %.0f)", self._server.name, lease.expires)
        watchdog = threading.Timer(timeout, self._stop_on_timeout)
        watchdog.daemon = True
        try:  # from here on, whatever happens, the lease is released
            ti.xcom_push(key="lease", value=lease.to_dict())
            self._configure(spec, self._server, holder)
            watchdog.start()
            return super().execute(context)
        except DockerContainerFailedException:
            if self._timed_out:
                raise TimeoutError(
                    f"the tests of {spec.name} ran longer than {spec.test.timeout_minutes} min: stopped"
                ) from None
            raise
        finally:
            watchdog.cancel()
            released = self._release() or self._released_at
            ti.xcom_push(key="lease", value={**lease.to_dict(), "released": released})

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
        if hook.release(lease):
            self.log.info("released test server %s", server.name)
            self._released_at = time.time()
            return self._released_at
        self.log.warning("the lease on %s was no longer ours (expired and taken over?)", server.name)
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
