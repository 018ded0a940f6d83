"""What the emulator tests share: test images, an emulator subprocess, small builders of the
official client's types. Every emulator is a real `python -m faye_plugin.emulator` subprocess."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2

REPO = Path(__file__).resolve().parents[2]
PARENT = "projects/local/locations/europe-west1"
# One image that answers on $PORT with who it is, one that never listens.
MARKER_DOCKERFILE = """FROM localhost/faye-base:latest
CMD ["sh", "-c", "mkdir -p /www && echo \\"revision=$K_REVISION greeting=$GREETING\\" > /www/index.html \\
 && exec httpd -f -p $PORT -h /www"]
"""
SILENT_DOCKERFILE = """FROM localhost/faye-base:latest
CMD ["sleep", "3600"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_and_push(client: docker.DockerClient, repo: str, dockerfile: str) -> str:
    """Build a one-file context on the build host and push it; return the image reference."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=f"{repo}:v1", rm=True)
    for line in client.images.push(repo, tag="v1", stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(f"push of {repo} failed: {line['error']}")
    return f"{repo}:v1"


@dataclass
class Images:
    marker: str
    silent: str


@dataclass
class Emulator:
    """A running emulator subprocess and clients bound to it."""

    docker_url: str
    state_dir: Path
    tls_dir: Path
    transport: str = "rest"  # what services()/revisions() speak: "rest" or "grpc" (the default transport)
    port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ, **self.env)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.setdefault("PYTHONPYCACHEPREFIX", str(REPO / ".cache" / "pycache"))
        log = (self.state_dir / "emulator.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "faye_plugin.emulator",
                "--port",
                str(self.port),
                "--state-dir",
                str(self.state_dir),
                "--docker-url",
                self.docker_url,
                "--ready-timeout",
                "4",
                "--grpc-port",
                str(self.grpc_port),
                "--tls-dir",
                str(self.tls_dir),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        deadline = time.monotonic() + 120  # a loaded 2-core machine can take a while to import
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log_text = (self.state_dir / "emulator.log").read_text()
                raise RuntimeError(f"emulator exited: {log_text[-3000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("emulator did not answer /healthz in 120 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    def remove_containers(self) -> None:
        """Remove the containers this emulator left behind (cleanup only, never asserted on)."""
        client = docker.DockerClient(base_url=self.docker_url, version="1.41")
        for container in client.containers.list(
            all=True, filters={"label": f"faye.emulator.state={self.state_dir.resolve()}"}
        ):
            container.remove(force=True)

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _client_kwargs(self) -> dict[str, Any]:
        """REST: the http:// endpoint. gRPC: nothing but host:port (the CA comes from
        GRPC_DEFAULT_SSL_ROOTS_FILE_PATH), with the client's default transport."""
        if self.transport == "grpc":
            return {
                "credentials": AnonymousCredentials(),
                "client_options": ClientOptions(api_endpoint=self.grpc_endpoint),
            }
        return {
            "transport": "rest",
            "credentials": AnonymousCredentials(),
            "client_options": ClientOptions(api_endpoint=self.url),
        }

    def services(self) -> run_v2.ServicesClient:
        return run_v2.ServicesClient(**self._client_kwargs())

    def revisions(self) -> run_v2.RevisionsClient:
        return run_v2.RevisionsClient(**self._client_kwargs())

    def get_via(self, uri: str, path: str = "/") -> requests.Response:
        """GET a service or tag URI the way Python clients do: connect to 127.0.0.1, send the Host."""
        host = uri.removeprefix("http://")
        return requests.get(f"{self.url}{path}", headers={"Host": host}, timeout=10)

    def faults(self, *rules: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.url}/_emulator/faults", data=json.dumps(list(rules)), timeout=5)


def launch(
    stack: dict[str, Any], state_dir: Path, transport: str, env: dict[str, str] | None = None
) -> Emulator:
    emulator = Emulator(
        docker_url=stack["run_docker_url"],
        state_dir=state_dir,
        env=env or {},
        tls_dir=Path(stack["cloud_run_grpc_ca"]).parent,
        transport=transport,
    )
    emulator.start()
    return emulator


REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def service_name(service_id: str) -> str:
    return f"{PARENT}/services/{service_id}"


def template(image: str, revision: str = "", greeting: str = "hi", **labels: str) -> run_v2.RevisionTemplate:
    return run_v2.RevisionTemplate(
        revision=revision,
        labels=labels,
        containers=[run_v2.Container(image=image, env=[run_v2.EnvVar(name="GREETING", value=greeting)])],
    )


def create(
    client: run_v2.ServicesClient, service_id: str, image: str, greeting: str = "hi"
) -> run_v2.Service:
    op = client.create_service(
        parent=PARENT,
        service_id=service_id,
        service=run_v2.Service(template=template(image, greeting=greeting)),
    )
    return op.result(timeout=60)


def tag_target(revision: str, tag: str, percent: int = 0) -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(type_=REVISION, revision=revision, tag=tag, percent=percent)


def pinned(revision: str) -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=100)


def patch(
    client: run_v2.ServicesClient, service: run_v2.Service, *paths: str, allow_missing: bool = False
) -> Any:
    """Send faye's kind of PATCH (updateMask, optional allowMissing, the service's etag); return the LRO."""
    request = run_v2.UpdateServiceRequest(
        service=service, allow_missing=allow_missing, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
    )
    return client.update_service(request=request)


def short(full_name: str) -> str:
    return full_name.rsplit("/", 1)[1]


def revision_of(response: requests.Response) -> str:
    """The revision id a marker container reports in its answer."""
    assert response.status_code == 200, response.text
    fields = dict(part.split("=", 1) for part in response.text.split())
    return fields["revision"]


def error_of(response: requests.Response) -> dict[str, Any]:
    """The `error` object of a Google API error body."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) - {"details"} == {"code", "message", "status"}, body
    assert body["error"]["code"] == response.status_code
    return dict(body["error"])


def running_revisions(docker_url: str) -> set[str]:
    """K_REVISION of every running container on a Docker host (what Cloud Run would bill for)."""
    client = docker.DockerClient(base_url=docker_url, version="1.41")
    found = set()
    for container in client.containers.list():
        env = dict(e.split("=", 1) for e in container.attrs["Config"].get("Env") or [] if "=" in e)
        if "K_REVISION" in env:
            found.add(env["K_REVISION"])
    return found


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll `check` until it holds or `timeout` passes (background work such as stopping a container)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def kill_revision(docker_url: str, revision_id: str) -> int:
    """Kill the main process of a revision's containers (as a crash would); return how many.

    SIGKILL goes to the process the Docker host reports (same machine): podman 4.3's compat `kill`
    answers about 20 s late.
    """
    client = docker.DockerClient(base_url=docker_url, version="1.41")
    killed = 0
    for container in client.containers.list():
        if f"K_REVISION={revision_id}" in (container.attrs["Config"].get("Env") or []):
            os.kill(int(container.attrs["State"]["Pid"]), signal.SIGKILL)
            killed += 1
    return killed


def field_violations(error: Any) -> list[tuple[str, str]]:
    """(field, description) of every BadRequest field violation in an API error's details (REST
    gives them as JSON, gRPC as messages)."""
    found = []
    for detail in error.details:
        if isinstance(detail, dict) and detail.get("@type") == "type.googleapis.com/google.rpc.BadRequest":
            found += [(v["field"], v["description"]) for v in detail["fieldViolations"]]
        elif isinstance(detail, error_details_pb2.BadRequest):
            found += [(v.field, v.description) for v in detail.field_violations]
    return found
