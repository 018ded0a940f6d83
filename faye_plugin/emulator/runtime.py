"""Revisions really run: one container per serving revision on a Docker Engine API (host network).

The image of the template's first container is pulled from its registry, started with `PORT=<a free
port>`, `K_SERVICE`/`K_REVISION`/`K_CONFIGURATION` and the template's env, and probed on that port (TCP,
like Cloud Run's default startup probe). Containers carry labels naming this emulator's state folder,
so a restarted emulator finds its own containers and no one else's.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

log = logging.getLogger(__name__)

LABEL_STATE = "faye.emulator.state"
LABEL_REVISION = "faye.emulator.revision"
LABEL_PORT = "faye.emulator.port"
DOCKER_API_VERSION = "1.41"

# on_result(revision full name, ready?, message, port)
ResultCallback = Callable[[str, bool, str, int], None]


#: Container states that mean it ended (podman 4.3's compat API says "stopped" where Docker says "exited").
ENDED = ("exited", "dead", "stopped")


def not_ready_message(revision_id: str, port: int, exit_code: int | None = None) -> str:
    """Return the message Cloud Run gives for a container that never listened on $PORT.

    A container that ended first gets Cloud Run's shorter wording plus the exit code it logs.
    """
    start = (
        f"Revision '{revision_id}' is not ready and cannot serve traffic. The user-provided container "
        f"failed to start and listen on the port defined provided by the PORT={port} environment "
        "variable"
    )
    if exit_code is not None:
        return (
            f"{start}. Container called exit({exit_code}). "
            "Logs for this revision might contain more information."
        )
    return (
        f"{start} within the allocated timeout. This can happen when the container port is "
        "misconfigured or if the timeout is too short. The health check timeout can be extended. "
        "Logs for this revision might contain more information."
    )


def free_port(taken: set[int]) -> int:
    """Pick a free TCP port on 127.0.0.1 that this runtime has not handed out."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def port_answers(port: int) -> bool:
    """Return True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Runtime:
    """Start, probe, adopt and stop revision containers in a small thread pool."""

    def __init__(
        self, docker_url: str, state_dir: str, ready_timeout: float, on_result: ResultCallback
    ) -> None:
        self.docker_url = docker_url
        self.state_dir = state_dir
        self.ready_timeout = ready_timeout
        self.on_result = on_result
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()
        self._ports: dict[str, int] = {}
        self._busy: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="revision")
        self._closing = threading.Event()

    @property
    def client(self) -> docker.DockerClient:
        """The Docker SDK client, built on first use."""
        if self._client is None:
            self._client = docker.DockerClient(
                base_url=self.docker_url, version=DOCKER_API_VERSION, timeout=120
            )
        return self._client

    def port_of(self, revision: str) -> int | None:
        """Return the port of a running revision, or None."""
        with self._lock:
            return self._ports.get(revision)

    def is_running(self, revision: str) -> bool:
        """Return True when the revision's container answered and has not been stopped since."""
        return self.port_of(revision) is not None

    def start(self, revision: str, service_id: str, revision_id: str, template: dict[str, Any]) -> None:
        """Run the revision in the background (adopting a live container of ours if there is one)."""
        with self._lock:
            if revision in self._busy or revision in self._ports:
                return
            self._busy.add(revision)
        self._pool.submit(self._start, revision, service_id, revision_id, template)

    def forget(self, revision: str) -> None:
        """Mark a revision's container as gone (it stopped answering) so the next start replaces it."""
        with self._lock:
            self._ports.pop(revision, None)

    def stop(self, revision: str) -> None:
        """Stop and remove the revision's containers in the background."""
        with self._lock:
            self._ports.pop(revision, None)
        self._pool.submit(self._remove, revision)

    def remove_strays(self, keep: set[str]) -> None:
        """Remove this emulator's containers whose revision is not in `keep` (called at start)."""
        try:
            label = f"{LABEL_STATE}={self.state_dir}"
            found = self.client.containers.list(all=True, filters={"label": label})
        except docker.errors.DockerException as err:
            log.warning("cannot list containers on %s: %s", self.docker_url, err)
            return
        for container in found:
            if container.labels.get(LABEL_REVISION) not in keep:
                self._remove_container(container)

    def close(self) -> None:
        """Stop accepting work and abandon probes (containers keep running; a restart adopts them)."""
        self._closing.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- background jobs -------------------------------------------------------------------------------

    def _containers_of(self, revision: str) -> list[Container]:
        filters = {"label": [f"{LABEL_STATE}={self.state_dir}", f"{LABEL_REVISION}={revision}"]}
        return list(self.client.containers.list(all=True, filters=filters))

    def _start(self, revision: str, service_id: str, revision_id: str, template: dict[str, Any]) -> None:
        port = 0
        try:
            adopted = self._adopt(revision)
            if adopted:
                log.info("revision %s: adopted its running container on port %s", revision, adopted)
                self._finish(revision, True, "", adopted)
                return
            with self._lock:
                port = free_port(set(self._ports.values()))
            container = self._run(revision, service_id, revision_id, template, port)
            ok, exit_code = self._probe(container, port)
            if self._closing.is_set():
                log.info("revision %s: start abandoned at shutdown", revision)
                return  # shutting down: record nothing, the next start adopts or restarts it
            if not ok:
                self._remove_container(container)
            self._finish(revision, ok, "" if ok else not_ready_message(revision_id, port, exit_code), port)
        except docker.errors.ImageNotFound:
            image = template["containers"][0]["image"]
            self._finish(revision, False, f"Image '{image}' not found.", port)
        except docker.errors.APIError as err:
            image = template["containers"][0]["image"]
            message = err.explanation or str(err)
            if "manifest unknown" in str(message).lower() or "not found" in str(message).lower():
                message = f"Image '{image}' not found."
            self._finish(
                revision,
                False,
                f"Revision '{revision_id}' is not ready and cannot serve traffic. {message}",
                port,
            )
        except Exception as err:  # the emulator must survive whatever the Docker host does
            log.exception("starting %s failed", revision)
            self._finish(
                revision,
                False,
                f"Revision '{revision_id}' is not ready and cannot serve traffic. "
                f"Internal error starting the container: {err}",
                port,
            )

    def _adopt(self, revision: str) -> int:
        for container in self._containers_of(revision):
            port = int(container.labels.get(LABEL_PORT, "0"))
            if container.status == "running" and port and port_answers(port):
                return port
            self._remove_container(container)
        return 0

    def _run(
        self, revision: str, service_id: str, revision_id: str, template: dict[str, Any], port: int
    ) -> Container:
        spec = template["containers"][0]
        image = spec["image"]
        self.client.images.pull(image)
        env = {e["name"]: e.get("value", "") for e in spec.get("env", []) if "name" in e}
        env.update(PORT=str(port), K_SERVICE=service_id, K_REVISION=revision_id, K_CONFIGURATION=service_id)
        return self.client.containers.run(
            image,
            command=spec.get("args") or None,
            entrypoint=spec.get("command") or None,
            working_dir=spec.get("workingDir") or None,
            environment=env,
            labels={LABEL_STATE: self.state_dir, LABEL_REVISION: revision, LABEL_PORT: str(port)},
            network_mode="host",
            detach=True,
        )

    def _probe(self, container: Container, port: int) -> tuple[bool, int | None]:
        """Wait until the container listens on ``port``: (True, None); or it ended: (False, its exit
        code); or the ready timeout passed: (False, None)."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline and not self._closing.is_set():
            if port_answers(port):
                return True, None
            container.reload()
            if container.status in ENDED:
                return False, int(container.attrs.get("State", {}).get("ExitCode") or 0)
            time.sleep(0.1)
        return False, None

    def _finish(self, revision: str, ok: bool, message: str, port: int) -> None:
        with self._lock:
            self._busy.discard(revision)
            if ok:
                self._ports[revision] = port
        try:
            self.on_result(revision, ok, message, port)
        except Exception:
            log.exception("recording the result of %s failed", revision)

    def _remove(self, revision: str) -> None:
        try:
            for container in self._containers_of(revision):
                self._remove_container(container)
        except docker.errors.DockerException as err:
            log.warning("cannot remove containers of %s: %s", revision, err)

    def _remove_container(self, container: Container) -> None:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # already gone (two stops of one revision raced)
        except docker.errors.DockerException as err:
            log.warning("cannot remove container %s: %s", container.id, err)
