"""faye at Cloud Run's revision-tag limit, on real peers: an emulator of the test's own (the stack's
one is shared, and filling its project would take tags from other tests), the stack's Caddy, registry,
run host and Airflow API, and faye's own code: ``DeployPreviewOperator`` / ``UpdateProxyOperator``
(the deploy DAG's last two steps), ``faye doctor`` (:func:`faye_plugin.doctor.check`) and
``faye_cleanup``'s repair (:func:`repair_lost_previews`).

The project and region are filled to the limit as on a shared GCP project: another service holds most
tags, faye's service holds its previews in three slots. A fourth deploy takes the region over the
limit, so Cloud Run deletes the oldest traffic-less tag of the writing service: faye's oldest preview.

The limit is Cloud Run's real 2,000, not a smaller one: the filler's tags
share one revision (one container), so filling costs one write and the whole test about 11 s of its
own (7 s at a limit of 40, which would change no rule, only when it applies: faye's code knows no
number, it reads which tags the service has after the fact).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from emulator_support import Emulator
from faye_testing import push_image
from google.cloud import run_v2

from faye_plugin.doctor import check
from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, service_path, tags
from faye_plugin.hooks.proxy import ProxyHook
from faye_plugin.preview_state import PreviewState

pytestmark = pytest.mark.integration
LIMIT = 2000  # revision tags per project and region (Cloud Run's quota; the emulator's default)
PROJECT, REGION = "limits", "europe-west1"
SHA = "4242424242424242424242424242424242424242"
CONN = "faye_limits_run"
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
SERVE = (
    'mkdir -p /tmp/www && echo "$GREETING $K_REVISION" > /tmp/www/index.html'
    ' && exec httpd -f -p "0.0.0.0:$PORT" -h /tmp/www'
)


@pytest.fixture(scope="module")
def emulator(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    running = Emulator(
        docker_url=stack["run_docker_url"],
        state_dir=tmp_path_factory.mktemp("limits-emulator"),
        tls_dir=Path(stack["cloud_run_grpc_ca"]).parent,
        env={"FAYE_EMULATOR_MAX_TAGS": str(LIMIT)},  # the default, said out loud
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()
        running.remove_containers()


@pytest.fixture
def world(
    stack: dict[str, Any],
    stack_process_env: dict[str, str],
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Any]]:
    """A catalogue of one service ``lim-<id>`` (slots ``<id>-1..4``) on the test's emulator, the stack's
    proxy and registry (its image ``<registry>/faye-test/lim-<id>:<SHA>``); the routes go afterwards."""
    ident = uuid.uuid4().hex[:6]
    name, slots = f"lim-{ident}", [f"l{ident}-{n}" for n in range(1, 5)]
    dockerfile = f"FROM localhost/faye-base:latest\nCMD {json.dumps(['/bin/sh', '-c', SERVE])}\n"
    repository = push_image(stack, tmp_path, name, SHA, dockerfile)
    catalogue = yaml.safe_load(Path(stack["catalogue"]).read_text())
    entry = catalogue["services"]["hello"]
    entry.update(
        cloud_run={"project": PROJECT, "region": REGION, "service": name, "gcp_conn_id": CONN},
        image=repository,
        slots=slots,
        env={"GREETING": "hello from PR {{ pr }}"},
        secret_env={},
    )
    entry["test"]["image"] = repository
    catalogue["services"] = {name: entry}
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(catalogue))
    monkeypatch.setenv("AIRFLOW__FAYE__CATALOGUE", str(path))
    extra = {"is_anonymous": True, "project": PROJECT, "api_endpoint": emulator.url}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN.upper()}", json.dumps({"conn_type": "google_cloud_platform", "extra": extra})
    )
    yield {"name": name, "slots": slots, "image": f"{repository}:{SHA}"}
    proxy = ProxyHook()
    for slot in slots:
        proxy.delete_slot_route(slot)


def deploy(world: dict[str, Any], pr: int, slot: str) -> dict[str, Any]:
    """The deploy DAG's deploy_revision and update_proxy, as its tasks run them."""
    from faye_plugin.operators.cloud_run import DeployPreviewOperator
    from faye_plugin.operators.proxy import UpdateProxyOperator

    result = DeployPreviewOperator(
        task_id="deploy_revision",
        service=world["name"],
        pr=pr,
        git_sha=SHA,
        slot=slot,
        image=world["image"],
        env={"GREETING": f"hello from PR {pr}"},
        deferrable=False,
    ).execute({"run_id": f"manual__limits-{world['name']}-{pr}"})  # type: ignore[arg-type]
    UpdateProxyOperator(task_id="update_proxy", service=world["name"], preview=result).execute({})  # type: ignore[arg-type]
    return dict(result)


def mine(world: dict[str, Any]) -> list[str]:
    """faye doctor's report, the lines about this test's service (the stack's proxy is shared)."""
    from faye_plugin.catalogue import load_catalogue

    catalogue = load_catalogue()
    assert list(catalogue.services) == [world["name"]]
    return [p for p in check(catalogue) if world["name"] in p]


def via_proxy(stack: dict[str, Any], slot: str) -> requests.Response:
    host = stack["proxy_public_url"].format(slot=slot).split("://", 1)[1].split(":", 1)[0]
    return requests.get(f"{stack['proxy_url']}/", headers={"Host": host}, timeout=30)


def test_a_deploy_at_the_tag_limit_works_and_cleanup_repairs_the_tag_cloud_run_deleted(
    stack: dict[str, Any], emulator: Emulator, world: dict[str, Any]
) -> None:
    started = time.monotonic()
    hook = CloudRunPreviewHook(gcp_conn_id=CONN, operation_timeout=120)
    name, slots = world["name"], world["slots"]
    # production: a service of its own with 100% traffic, as faye's previews go beside it
    production = run_v2.Service(
        name=service_path(PROJECT, REGION, name),
        template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=world["image"])]),
    )
    hook.update_service(production, allow_missing=True)
    for pr, slot in zip((1, 2, 3), slots, strict=False):
        deploy(world, pr, slot)
    # another service of the project and region holds the rest of the 2,000 tags, on one revision
    filler = run_v2.Service(
        name=service_path(PROJECT, REGION, f"fill-{name}"),
        template=run_v2.RevisionTemplate(
            revision=f"fill-{name}-one", containers=[run_v2.Container(image=world["image"])]
        ),
        traffic=[
            run_v2.TrafficTarget(type_=REVISION, revision=f"fill-{name}-one", percent=100),
            *(
                run_v2.TrafficTarget(type_=REVISION, revision=f"fill-{name}-one", tag=f"f-{n:04d}")
                for n in range(LIMIT - 3)
            ),
        ],
    )
    hook.update_service(filler, allow_missing=True)

    def region_tags() -> int:
        listed = hook.services_client.list_services(parent=f"projects/{PROJECT}/locations/{REGION}")
        return sum(len([t for t in s.traffic if t.tag]) for s in listed)

    assert region_tags() == LIMIT  # full: nothing deleted yet
    assert mine(world) == []

    # a deploy at the limit works: the tag, its URL, the slot's route
    fourth = deploy(world, 4, slots[3])
    service = hook.get_service(project=PROJECT, region=REGION, service=name)
    assert service is not None
    assert tags(service) == {"pr-2", "pr-3", "pr-4"}  # Cloud Run deleted the oldest preview's tag, pr-1
    assert region_tags() == LIMIT
    assert emulator.get_via(fourth["url"]).text.strip().startswith("hello from PR 4")
    assert via_proxy(stack, slots[3]).text.strip() == f"hello from PR 4 {fourth['revision']}"
    assert sorted(p.pr for p in PreviewState.read(service)) == [1, 2, 3, 4]  # pr-1's record is left

    # faye doctor sees it: the claim and the route of a tag Cloud Run no longer serves
    assert sorted(mine(world)) == [
        f"proxy route {slots[0]} ({name} pr-1): Cloud Run does not serve tag pr-1",
        f"service {name}: claim pr-1 holds slot {slots[0]} but Cloud Run has no tag pr-1",
    ]

    # faye_cleanup's repair: the route, then the record, in one write of the service; doctor is clean
    from faye_plugin.dags.cleanup import repair_lost_previews

    before = service.generation
    repaired = repair_lost_previews()
    assert sorted((r["service"], r["action"], r["pr"], r["slot"]) for r in repaired) == [
        (name, "forget lost record", 1, ""),
        (name, "remove route", 1, slots[0]),
    ]
    after = hook.get_service(project=PROJECT, region=REGION, service=name)
    assert after is not None
    assert after.generation == before + 1  # one write
    assert sorted(p.pr for p in PreviewState.read(after)) == [2, 3, 4]
    assert tags(after) == {"pr-2", "pr-3", "pr-4"}
    assert mine(world) == []
    assert via_proxy(stack, slots[3]).status_code == 200
    assert repair_lost_previews() == []  # twice in a row: nothing more
    print(f"filled, deployed at the limit, repaired in {time.monotonic() - started:.1f} s")
