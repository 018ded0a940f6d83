"""The Cloud Run emulator at scale: GetService / UpdateService latency at 1, 200 and 2,000 tags on one
service (REST, gRPC and plain HTTP side by side, one table), and ``faye_cleanup`` removing 2,000
expired previews.

    FAYE_HOME=$PWD/.faye FAYE_PORT_BASE=28700 uv run faye stack up
    FAYE_HOME=$PWD/.faye FAYE_PORT_BASE=28700 uv run python bench/bench_emulator_scale.py [latency|cleanup]

Latency: service ``scale-tags`` in project ``bench-scale`` gets 1, then 200, then 2,000 tags on its one
revision (one container); each size is measured through the official client over REST and over gRPC
(the stack's CA via GRPC_DEFAULT_SSL_ROOTS_FILE_PATH), and as plain HTTP/JSON with ``requests`` (the
emulator's part of the REST numbers: no proto work in the client). Each write is a GetService and an
UpdateService (``op.result()``): "UpdateService" is an annotation-only patch (the write path of faye's
previews record), "remove 1 tag" patches ``traffic`` and ``annotations`` without the last tag (the
write of one faye removal). ``FAYE_BENCH_CLOUD_RUN_URL`` / ``FAYE_BENCH_CLOUD_RUN_GRPC`` aim it at
another emulator (e.g. an older build started beside the stack with the stack's TLS folder).

Cleanup: 2,000 expired previews over ``FAYE_BENCH_SERVICES`` (default 4) services ``scale-0..`` in
project ``local`` are seeded through the public Cloud Run API in faye's state format (one function,
:func:`seed_expired_previews`); the services are added to the stack's catalogue for the run (the
file is restored afterwards), ``faye_cleanup`` is triggered through Airflow's REST API, and the
previews left are counted every few seconds until none are left or ``FAYE_BENCH_CLEANUP_TIMEOUT``
seconds (default 600) pass. Goal: under 60 s. ``FAYE_BENCH_PREVIEWS`` seeds another number (the
project's 2,000-tag limit counts the stack's own tags too: 1,996 fits beside a few ``hello`` previews).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from faye_plugin.hooks.airflow_api import AirflowApiClient
from faye_plugin.preview_state import Preview, PreviewState

REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
PREVIEWS = int(os.environ.get("FAYE_BENCH_PREVIEWS", "2000"))  # fewer: a rate below max_map_length
TAG_COUNTS = (1, 200, 2000)
RUNS = 5
CALL_TIMEOUT = 600.0
WHAT = {"get": "GetService", "update": "UpdateService", "remove": "remove 1 tag"}
TRANSPORTS = {"rest": "REST", "grpc": "gRPC", "http": "raw HTTP"}


def status() -> dict[str, Any]:
    home = Path(os.environ.get("FAYE_HOME", ".faye"))
    st = dict(json.loads((home / "status.json").read_text()))
    # Another emulator build beside the stack's (e.g. the previous commit's, to compare): same CA.
    st["cloud_run_url"] = os.environ.get("FAYE_BENCH_CLOUD_RUN_URL", st["cloud_run_url"])
    st["cloud_run_grpc_endpoint"] = os.environ.get("FAYE_BENCH_CLOUD_RUN_GRPC", st["cloud_run_grpc_endpoint"])
    return st


def clients(st: dict[str, Any], transport: str) -> run_v2.ServicesClient:
    if transport == "grpc":
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = st["cloud_run_grpc_ca"]  # read once
        return run_v2.ServicesClient(
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=st["cloud_run_grpc_endpoint"]),
        )
    return run_v2.ServicesClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=st["cloud_run_url"]),
    )


def build_image(st: dict[str, Any]) -> str:
    from emulator_latency import build_image as build_revision_image  # bench/ is the script's path

    return build_revision_image(st, "bench-scale")


def fresh_service(client: run_v2.ServicesClient, parent: str, service_id: str, image: str) -> run_v2.Service:
    name = f"{parent}/services/{service_id}"
    try:
        client.delete_service(name=name).result(timeout=120)
    except Exception:  # not there: fine
        pass
    template = run_v2.RevisionTemplate(containers=[run_v2.Container(image=image)])
    return client.create_service(
        parent=parent, service_id=service_id, service=run_v2.Service(template=template)
    ).result(timeout=180)


def patch(client: run_v2.ServicesClient, service: run_v2.Service, *paths: str) -> run_v2.Service:
    request = run_v2.UpdateServiceRequest(
        service=service, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
    )
    # No 15 s client deadline: the slowest emulator builds took longer than that at 2,000 tags.
    return client.update_service(request=request, timeout=CALL_TIMEOUT).result(timeout=CALL_TIMEOUT)


def timed(call: Callable[[], object], runs: int) -> tuple[float, float]:
    """(median, p90) in ms of ``runs`` calls."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.9))]


def raw_calls(st: dict[str, Any], name: str) -> tuple[Callable[[], object], ...]:
    """GetService, the annotation-only write and the one-tag removal as plain HTTP/JSON (``requests``,
    C-coded JSON): the emulator's own part of the REST rows, without the client library's proto work."""
    url = f"{st['cloud_run_url']}/v2/{name}"

    def read() -> dict[str, Any]:
        answer = requests.get(url, timeout=CALL_TIMEOUT)
        answer.raise_for_status()
        return dict(answer.json())

    def write(body: dict[str, Any], mask: str) -> None:
        answer = requests.patch(url, params={"updateMask": mask}, json=body, timeout=CALL_TIMEOUT)
        answer.raise_for_status()
        if not answer.json().get("done"):
            raise RuntimeError(f"the write did not finish at once: {answer.text[:200]}")

    def annotate() -> None:
        current = read()
        current["annotations"] = {"bench": str(time.time())}
        write(current, "annotations")

    def remove_one() -> None:
        current = read()
        last = [t for t in current["traffic"] if t.get("tag")][-1]
        current["traffic"] = [t for t in current["traffic"] if t is not last]
        current["annotations"] = {"bench": str(time.time())}
        write(current, "traffic,annotations")

    return read, annotate, remove_one


def latency(st: dict[str, Any], image: str) -> dict[tuple[int, str, str], tuple[float, float]]:
    """Measure GetService, UpdateService (annotation-only) and UpdateService removing one tag (the write
    of a faye removal) at 1, 200 and 2,000 tags, over REST, gRPC and plain HTTP; print the table."""
    rest = clients(st, "rest")
    service = fresh_service(rest, "projects/bench-scale/locations/europe-west1", "scale-tags", image)
    revision = service.latest_ready_revision.rsplit("/", 1)[1]
    name = service.name
    results: dict[tuple[int, str, str], tuple[float, float]] = {}
    for count in TAG_COUNTS:
        service = rest.get_service(name=name, timeout=CALL_TIMEOUT)
        service.traffic = [run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=100)] + [
            run_v2.TrafficTarget(type_=REVISION, revision=revision, tag=f"pr-{n}")
            for n in range(1, count + RUNS * len(TRANSPORTS) + 1)  # the removals take these off again
        ]
        patch(rest, service, "traffic")
        for transport in TRANSPORTS:
            if transport == "http":
                read, annotate, remove_one = raw_calls(st, name)
            else:
                client = clients(st, transport)

                def read(c: run_v2.ServicesClient = client) -> None:
                    c.get_service(name=name, timeout=CALL_TIMEOUT)

                def annotate(c: run_v2.ServicesClient = client) -> None:
                    current = c.get_service(name=name, timeout=CALL_TIMEOUT)
                    current.annotations = {"bench": str(time.time())}
                    patch(c, current, "annotations")

                def remove_one(c: run_v2.ServicesClient = client) -> None:
                    current = c.get_service(name=name, timeout=CALL_TIMEOUT)
                    last = [t for t in current.traffic if t.tag][-1]
                    current.traffic = [t for t in current.traffic if t.tag != last.tag]
                    current.annotations = {"bench": str(time.time())}
                    patch(c, current, "traffic", "annotations")

            results[count, transport, "get"] = timed(read, RUNS * 2)
            # the write rows include the GetService before the write, as every faye write does
            results[count, transport, "update"] = timed(annotate, RUNS)
            results[count, transport, "remove"] = timed(remove_one, RUNS)
            done = ", ".join(f"{k} {results[count, transport, k][0]:.0f} ms" for k in WHAT)
            print(f"  {count} tags, {transport}: {done}", flush=True)
    rest.delete_service(name=name).result(timeout=CALL_TIMEOUT)
    print(f"\nmedian / p90 ms ({RUNS * 2} GetService, {RUNS} of each write; a write = GetService + write)")
    print("| tags | " + " | ".join(f"{WHAT[w]} {TRANSPORTS[t]}" for w in WHAT for t in TRANSPORTS) + " |")
    print("|" + "---|" * (1 + len(WHAT) * len(TRANSPORTS)))
    for count in TAG_COUNTS:
        cells = ["{:,.0f} / {:,.0f}".format(*results[count, t, w]) for w in WHAT for t in TRANSPORTS]
        print(f"| {count:,} | " + " | ".join(cells) + " |")
    return results


def seed_previews(
    client: run_v2.ServicesClient, service: run_v2.Service, prs: range, *, expires: int
) -> run_v2.Service:
    """Give ``service`` one preview per PR it has none of: a tag on its serving revision and a record in
    faye's state (faye_plugin/preview_state.py) expiring at ``expires``."""
    revision = service.latest_ready_revision.rsplit("/", 1)[1]
    state = PreviewState.read(service)
    records = {  # a PR the service already has a preview of (a bench run before) is left as it is
        pr: Preview(pr=pr, sha=f"{pr:07x}", revision=revision, expires=expires, deployed_at=expires - 3600)
        for pr in prs
        if state.get(pr) is None
    }
    state = PreviewState({**state.previews, **records})
    service.traffic = list(service.traffic) + [
        run_v2.TrafficTarget(type_=REVISION, revision=revision, tag=p.tag) for p in records.values()
    ]
    state.write(service)
    return patch(client, service, "traffic", "annotations")


def seed_expired_previews(client: run_v2.ServicesClient, service: run_v2.Service, prs: range) -> None:
    """Give ``service`` one preview per PR that expired an hour ago (see :func:`seed_previews`)."""
    seed_previews(client, service, prs, expires=int(time.time()) - 3600)


def previews_left(client: run_v2.ServicesClient, names: list[str]) -> int:
    return sum(len(PreviewState.read(client.get_service(name=name))) for name in names)


def cleanup(st: dict[str, Any], image: str) -> None:
    count = int(os.environ.get("FAYE_BENCH_SERVICES", "4"))
    timeout = float(os.environ.get("FAYE_BENCH_CLEANUP_TIMEOUT", "600"))
    client = clients(st, "rest")
    parent = "projects/local/locations/europe-west1"
    per = PREVIEWS // count
    names = []
    started = time.perf_counter()
    for index in range(count):
        service = fresh_service(client, parent, f"scale-{index}", image)
        seed_expired_previews(client, service, range(1 + index * per, 1 + (index + 1) * per))
        names.append(service.name)
    print(
        f"seeded {previews_left(client, names)} expired previews on {count} services "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )

    catalogue = Path(st["catalogue"])
    original = catalogue.read_text()
    data = yaml.safe_load(original)
    hello = data["services"]["hello"]
    for index in range(count):
        entry = json.loads(json.dumps(hello))
        entry["cloud_run"]["service"] = f"scale-{index}"
        data["services"][f"scale-{index}"] = entry
    catalogue.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        airflow = AirflowApiClient(st["airflow_url"], st["airflow_username"], st["airflow_password"])
        start = time.perf_counter()
        run = airflow.trigger("faye_cleanup", {})
        left, state = PREVIEWS, "queued"
        while time.perf_counter() - start < timeout:
            state = airflow.get_run("faye_cleanup", run.run_id).state
            left = previews_left(client, names)
            print(f"  {time.perf_counter() - start:6.1f} s: run {state}, {left} previews left", flush=True)
            if state in ("success", "failed") or left == 0:
                break
            time.sleep(5)
        elapsed = time.perf_counter() - start
        removed = PREVIEWS - left
        print(
            f"faye_cleanup: {removed} of {PREVIEWS} previews removed in {elapsed:.1f} s "
            f"({removed / elapsed:.1f}/s; run {state}); goal: all in < 60 s",
            flush=True,
        )
    finally:
        catalogue.write_text(original)
        for name in names:
            client.delete_service(name=name).result(timeout=120)


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    st = status()
    image = build_image(st)
    if what in ("latency", "all"):
        latency(st, image)
    if what in ("cleanup", "all"):
        cleanup(st, image)


if __name__ == "__main__":
    main()
