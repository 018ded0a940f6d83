"""How long one call of each hook takes against a running local stack (median and p90 of N calls).

    FAYE_HOME=$PWD/.faye-h3 FAYE_PORT_BASE=29300 uv run faye stack up
    FAYE_HOME=$PWD/.faye-h3 FAYE_PORT_BASE=29300 uv run python bench/hooks_latency.py [N]

It pushes one tiny OCI image (a config blob, no layers) to the stack's registry, and adds and removes
one throw-away slot route; it leaves nothing else behind. The numbers are wall-clock, per call,
including the HTTP round trip and the hook's own work (a fresh hook per call for the first-use case).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable

import requests
from google.cloud import run_v2

from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, service_path, with_preview_revision
from faye_plugin.hooks.proxy import ProxyHook, SlotRoute
from faye_plugin.hooks.registry import RegistryHook
from faye_plugin.stack.config import StackConfig


def timed(label: str, call: Callable[[], object], runs: int) -> None:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
    print(f"{label:<52} median {statistics.median(samples):7.1f} ms   p90 {p90:7.1f} ms   (n={runs})")


def push_tiny_image(base: str, name: str, tag: str) -> None:
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    )
    data = config.encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = requests.post(f"{base}/v2/{name}/blobs/uploads/", timeout=10)
    start.raise_for_status()
    location = start.headers["Location"]
    location = location if location.startswith("http") else base + location
    requests.put(location, params={"digest": digest}, data=data, timeout=10).raise_for_status()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest,
            "size": len(data),
        },
        "layers": [],
    }
    requests.put(
        f"{base}/v2/{name}/manifests/{tag}",
        data=json.dumps(manifest),
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    ).raise_for_status()


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    cfg = StackConfig.from_env()
    registry_url, admin_url = cfg.url("registry"), cfg.url("proxy_admin")
    try:
        requests.get(f"{registry_url}/v2/", timeout=2).raise_for_status()
        requests.get(f"{admin_url}/config/", timeout=2).raise_for_status()
        requests.get(f"{cfg.url('cloud_run')}/healthz", timeout=2).raise_for_status()
    except requests.RequestException as exc:
        print(f"the stack at {cfg.home} is not up ({exc}); start it with `faye stack up`", file=sys.stderr)
        return 2
    os.environ["AIRFLOW_CONN_FAYE_REGISTRY"] = json.dumps(
        {"conn_type": "faye_registry", "host": registry_url}
    )
    os.environ["AIRFLOW_CONN_FAYE_PROXY"] = json.dumps(
        {"conn_type": "faye_proxy", "host": admin_url, "extra": {"public_url": cfg.proxy_public_url}}
    )
    os.environ["AIRFLOW_CONN_FAYE_CLOUD_RUN"] = json.dumps(
        {
            "conn_type": "google_cloud_platform",
            "extra": {"is_anonymous": True, "project": "local", "api_endpoint": cfg.url("cloud_run")},
        }
    )

    repository = f"{cfg.registry_host}/faye-bench/tiny"
    push_tiny_image(registry_url, "faye-bench/tiny", "v1")
    registry = RegistryHook()
    timed(
        "registry: digest of an existing tag (warm hook)",
        lambda: registry.get_manifest_digest(repository, "v1"),
        runs,
    )
    timed(
        "registry: missing tag -> None (warm hook)",
        lambda: registry.get_manifest_digest(repository, "nope"),
        runs,
    )
    timed(
        "registry: digest, fresh hook each call",
        lambda: RegistryHook().get_manifest_digest(repository, "v1"),
        runs,
    )

    proxy = ProxyHook()
    slot = f"bench{uuid.uuid4().hex[:6]}"
    route = SlotRoute(
        slot, proxy.slot_hostname(slot), "http://127.0.0.1:9", "bench", 1, "0" * 40, "bench-pr-1", "pr-1"
    )
    try:
        timed("proxy: upsert (first create, then replace)", lambda: proxy.upsert_slot_route(route), runs)
        timed("proxy: get_slot_route", lambda: proxy.get_slot_route(slot), runs)
        timed("proxy: list_slot_routes", proxy.list_slot_routes, runs)

        def create_and_delete() -> None:
            proxy.upsert_slot_route(route)
            proxy.delete_slot_route(slot)

        timed("proxy: create + delete", create_and_delete, runs)
    finally:
        proxy.delete_slot_route(slot)

    cloud_run = CloudRunPreviewHook()
    name = f"bench-{uuid.uuid4().hex[:6]}"
    timed(
        "cloud run: get_service of a missing service",
        lambda: cloud_run.get_service(project="local", region="europe-west1", service=name),
        runs,
    )
    candidate = with_preview_revision(
        run_v2.Service(name=service_path("local", "europe-west1", name)),
        revision=f"{name}-pr-1-0000000",
        image=f"{repository}:v1",
        env={},
        labels={},
        tag="pr-1",
    )
    timed(
        "cloud run: update_service(validate_only) incl. the LRO",
        lambda: cloud_run.update_service(candidate, allow_missing=True, validate_only=True),
        runs,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
