"""How fast the Cloud Run emulator of a running local stack answers (median and p90 of N calls).

    FAYE_HOME=$PWD/.faye-h2stack FAYE_PORT_BASE=29200 uv run faye stack up
    FAYE_HOME=$PWD/.faye-h2stack FAYE_PORT_BASE=29200 uv run python bench/emulator_latency.py [N]

It builds one tiny busybox image on the stack's builder, pushes it to the stack's registry and deploys
it to a throw-away service `bench-emulator`, which it deletes at the end. Numbers are wall-clock per
call through the official client (REST), so a write that waits for a container includes the client's
own LRO polling; "server-side" rows poll GetOperation every 20 ms instead, to show the emulator's part.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

PARENT = "projects/local/locations/europe-west1"
SERVICE = f"{PARENT}/services/bench-emulator"
DOCKERFILE = """FROM localhost/faye-base:latest
CMD ["sh", "-c", "mkdir -p /www && echo \\"$K_REVISION\\" > /www/index.html \\
 && exec httpd -f -p $PORT -h /www"]
"""
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def timed(label: str, call: Callable[[], object], runs: int) -> None:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
    print(f"{label:<58} median {statistics.median(samples):8.1f} ms   p90 {p90:8.1f} ms   (n={runs})")


def build_image(status: dict[str, Any], name: str = "bench-emulator") -> str:
    """Build the benches' revision image (busybox httpd answering its revision) and push it as ``name``."""
    client = docker.DockerClient(base_url=status["build_docker_url"], version="1.41", timeout=120)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE.encode())
        tar.addfile(info, io.BytesIO(DOCKERFILE.encode()))
    buf.seek(0)
    repo = f"{status['registry_host']}/{name}"
    client.images.build(fileobj=buf, custom_context=True, tag=f"{repo}:v1", rm=True)
    for line in client.images.push(repo, tag="v1", stream=True, decode=True):
        if "error" in line:
            raise SystemExit(line["error"])
    return f"{repo}:v1"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    home = Path(os.environ.get("FAYE_HOME", ".faye"))
    status = json.loads((home / "status.json").read_text())
    url = status["cloud_run_url"]
    client = run_v2.ServicesClient(
        transport="rest", credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=url)
    )
    image = build_image(status)
    template = run_v2.RevisionTemplate(containers=[run_v2.Container(image=image)])
    counter = iter(range(1, 10_000))

    def deploy_preview(wait: Callable[[object], object]) -> None:
        current = client.get_service(name=SERVICE)
        n = next(counter)
        current.template = run_v2.RevisionTemplate(
            revision=f"bench-emulator-b{n}", containers=[run_v2.Container(image=image)]
        )
        serving = [t for t in current.traffic if t.percent]
        current.traffic = [
            *serving,
            run_v2.TrafficTarget(type_=REVISION, revision=f"bench-emulator-b{n}", tag=f"pr-{n}"),
        ]
        op = client.update_service(
            request=run_v2.UpdateServiceRequest(
                service=current, update_mask=field_mask_pb2.FieldMask(paths=["template", "traffic"])
            )
        )
        wait(op)

    def server_side(op: object) -> None:
        name = op.operation.name  # type: ignore[attr-defined]
        while not requests.get(f"{url}/v2/{name}", timeout=10).json()["done"]:
            time.sleep(0.02)

    def annotate() -> None:
        current = client.get_service(name=SERVICE)
        current.annotations = {"faye.dev/previews": json.dumps({"t": time.time()})}
        client.update_service(
            request=run_v2.UpdateServiceRequest(
                service=current, update_mask=field_mask_pb2.FieldMask(paths=["annotations"])
            )
        ).result()

    try:
        client.delete_service(name=SERVICE).result()
    except Exception:
        pass
    start = time.perf_counter()
    created = client.create_service(
        parent=PARENT, service_id="bench-emulator", service=run_v2.Service(template=template)
    ).result()
    print(f"{'create + first revision ready (op.result)':<58} {1000 * (time.perf_counter() - start):8.1f} ms")
    host = created.uri.removeprefix("http://")
    timed("GetService", lambda: client.get_service(name=SERVICE), runs)
    timed(
        "front door GET (service URL -> container)",
        lambda: requests.get(f"{url}/", headers={"Host": host}, timeout=10).raise_for_status(),
        runs,
    )
    timed("annotation-only patch, op.result()", annotate, max(3, runs // 4))
    deploys = max(3, runs // 5)
    timed(
        "tagged revision deploy, op.result() (client polling)",
        lambda: deploy_preview(lambda op: op.result(timeout=120)),  # type: ignore[attr-defined]
        deploys,
    )
    timed(
        "tagged revision deploy, server-side (poll every 20 ms)", lambda: deploy_preview(server_side), deploys
    )
    client.delete_service(name=SERVICE).result()


if __name__ == "__main__":
    main()
