"""Build and Test groups, test-server leases and ``faye logs`` on the real local stack.

Runs go through the real scheduler (REST triggers), so the pool ``faye_test_servers`` is in force.
Test-only services (``sleeper``, ``failing``, ``long``) are added to the stack's catalogue for the
module and removed afterwards; their preview is a tiny HTTP server in this process, routed by Caddy
on the slot ``zt`` (``http://zt.preview.localhost:<proxy port>``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from faye_testing import AirflowAPI, stack_env

from faye_plugin.timestamps import epoch_of

pytestmark = pytest.mark.integration

SLOT = "zt"
MARKER = "faye-preview-ok"
#: A UTC ISO time as faye shows one (2026-12-02T01:02:03Z); an epoch (10 digits) is what it replaced.
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z"
EPOCH = re.compile(r"\b1\d{9}(\.\d+)?\b")


class _Preview(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(f"<p>{MARKER}</p>\n".encode())

    def log_message(self, *args: object) -> None:
        pass


def _service(stack: dict[str, Any], command: str, timeout_minutes: int = 2) -> dict[str, Any]:
    return {
        "cloud_run": {"project": "local", "region": "europe-west1"},
        "image": f"{stack['registry_host']}/hello",
        "build": {"git_url": stack["sample_repo"]},
        "slots": [SLOT],
        "test": {
            "image": "localhost/faye-base:latest",
            "command": ["sh", "-c", command],
            "timeout_minutes": timeout_minutes,
        },
    }


@pytest.fixture(scope="module")
def test_services(stack: dict[str, Any], stack_process_env: dict[str, str]) -> Iterator[None]:
    """Add the test-only services to the catalogue and route slot ``zt`` to a preview that answers."""
    from faye_plugin.hooks.proxy import ProxyHook, SlotRoute

    path = Path(stack["catalogue"])
    original = path.read_text()
    data = yaml.safe_load(original)
    check = f'wget -qO- "$PREVIEW_URL" | grep -q {MARKER}'
    data["services"]["sleeper"] = _service(
        stack,
        f'{check} && echo "tested $SERVICE pr $PR at $GIT_SHA"; echo "sleeper on stderr" >&2; sleep 3; '
        "echo finished",
    )
    data["services"]["failing"] = _service(
        stack, f'{check} && echo failing on purpose; echo "failing on stderr" >&2; exit 3'
    )
    data["services"]["long"] = _service(stack, "echo long test started; sleep 120; echo never")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Preview)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = ProxyHook("faye_proxy")
    proxy.upsert_slot_route(
        SlotRoute(
            slot=SLOT,
            hostname=proxy.slot_hostname(SLOT),
            upstream_url=f"http://127.0.0.1:{server.server_address[1]}",
            service="sleeper",
            pr=1,
            sha="0" * 40,
            revision="none",
            tag="pr-1",
        )
    )
    try:
        yield
    finally:
        proxy.delete_slot_route(SLOT)
        server.shutdown()
        path.write_text(original)


@pytest.fixture(scope="module")
def synced_pool(stack: dict[str, Any], airflow_api: AirflowAPI) -> dict[str, Any]:
    """``faye pool sync`` sizes the pool from the catalogue and makes it count deferred tasks."""
    env = {**stack_env(), "FAYE_AIRFLOW_URL": stack["airflow_url"], "FAYE_AIRFLOW_USER": "faye"}
    env["FAYE_AIRFLOW_PASSWORD"] = stack["airflow_password"]
    env["AIRFLOW__FAYE__CATALOGUE"] = stack["catalogue"]
    proc = subprocess.run(
        [sys.executable, "-m", "faye_plugin.cli.main", "pool", "sync"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    pool = dict(airflow_api.get("pools/faye_test_servers"))
    assert pool["slots"] == len(stack["test_docker_urls"]) and pool["include_deferred"] is True
    return pool


def _trigger(api: AirflowAPI, dag_id: str, conf: dict[str, Any], name: str, offset: int = 0) -> str:
    """Trigger with ``logical_date`` = now (+offset µs): FIFO order among pooled test tasks."""
    run_id = f"{name}-{uuid.uuid4().hex[:8]}"
    logical = datetime.now(UTC) + timedelta(microseconds=offset)
    body = {"dag_run_id": run_id, "logical_date": logical.isoformat(), "conf": conf}
    resp = api.session.post(f"{api.url}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return run_id


def _log_text(api: AirflowAPI, dag_id: str, run_id: str, task_id: str) -> str:
    data = api.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1")
    return "\n".join(str(e.get("event", "")) for e in data["content"] if isinstance(e, dict))


def _xcom(api: AirflowAPI, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
    path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
    return api.get(path, deserialize="true", stringify="false")["value"]


def _git(repo: str, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(
        ["git", "-C", repo, *args], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def _slow_commit(repo: str) -> str:
    """A commit (on its own branch) whose build prints ticks a second apart: a build that takes time."""
    work = Path(repo).parent / f"slow-{uuid.uuid4().hex[:6]}"
    subprocess.run(["git", "clone", "-q", repo, str(work)], check=True)
    dockerfile = (
        (work / "Dockerfile")
        .read_text()
        .replace(
            "COPY serve.sh", 'RUN for i in 1 2 3 4; do echo "faye-slow-tick $i"; sleep 1; done\nCOPY serve.sh'
        )
    )
    (work / "Dockerfile").write_text(dockerfile + f"# {uuid.uuid4().hex}\n")
    _git(str(work), "commit", "-qam", "slow build")
    sha = _git(str(work), "rev-parse", "HEAD")
    _git(str(work), "push", "-q", "origin", f"HEAD:refs/heads/{work.name}")
    shutil.rmtree(work)
    return sha


def test_builds_push_an_image_stream_live_and_fail_with_the_builders_message(
    stack: dict[str, Any], airflow_api: AirflowAPI, stack_process_env: dict[str, str]
) -> None:
    from faye_plugin.hooks.registry import RegistryHook

    repo = stack["sample_repo"]
    main_sha, broken_sha = _git(repo, "rev-parse", "main"), _git(repo, "rev-parse", "broken")
    slow_sha = _slow_commit(repo)
    base = {"service": "hello", "pr": 4}
    good = _trigger(airflow_api, "faye_build", {**base, "git_sha": main_sha}, "build-main")
    broken = _trigger(airflow_api, "faye_build", {**base, "git_sha": broken_sha}, "build-broken")
    slow = _trigger(airflow_api, "faye_build", {**base, "git_sha": slow_sha}, "build-slow")

    # `faye logs --follow` shows build output while build_image still runs
    env = {**stack_env(), "FAYE_AIRFLOW_URL": stack["airflow_url"], "FAYE_AIRFLOW_USER": "faye"}
    env["FAYE_AIRFLOW_PASSWORD"] = stack["airflow_password"]
    follower = subprocess.Popen(
        [sys.executable, "-m", "faye_plugin.cli.main", "logs", slow, "--follow", "--interval", "0.3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen_running: str | None = None
    lines: list[str] = []
    assert follower.stdout is not None
    for line in follower.stdout:
        lines.append(line.rstrip())
        if seen_running is None and "[build.build_image] faye-slow-tick" in line:
            tis = airflow_api.task_instances("faye_build", slow)
            seen_running = tis["build.build_image"]["state"]
    assert follower.wait(timeout=60) == 0, follower.stderr.read() if follower.stderr else ""
    assert seen_running == "running", lines[-20:]
    order = [ln.split("]")[0] + "]" for ln in lines]
    assert order.index("[validate]") < order.index("[build.build_image]") < order.index("[build.push_image]")
    assert any(ln.startswith("[build.push_image] pushed ") for ln in lines)

    # the build of main pushed an image the registry serves, by the digest the group hands on
    assert airflow_api.wait_run("faye_build", good, timeout=180)["state"] == "success"
    pushed = _xcom(airflow_api, "faye_build", good, "build.push_image", "return_value")
    repository = f"{stack['registry_host']}/hello"
    served = RegistryHook("faye_registry").get_manifest_digest(repository, main_sha)
    assert served is not None and pushed == {
        "image": f"{repository}@{served}",
        "digest": served,
        "tag": f"{repository}:{main_sha}",
    }

    # a broken Dockerfile fails build_image with the builder's own words, and nothing is pushed
    assert airflow_api.wait_run("faye_build", broken, timeout=180)["state"] == "failed"
    tis = airflow_api.task_instances("faye_build", broken)
    assert tis["build.build_image"]["state"] == "failed"
    assert tis["build.push_image"]["state"] == "upstream_failed"
    text = _log_text(airflow_api, "faye_build", broken, "build.build_image")
    assert "build failed:" in text and "missing-file" in text
    assert RegistryHook("faye_registry").get_manifest_digest(repository, broken_sha) is None


@pytest.mark.usefixtures("test_services", "synced_pool")
def test_a_failing_test_command_fails_the_group(airflow_api: AirflowAPI) -> None:
    conf = {"service": "failing", "pr": 7, "git_sha": "a" * 40, "slot": SLOT}
    run_id = _trigger(airflow_api, "faye_test", conf, "fail")
    assert airflow_api.wait_run("faye_test", run_id, timeout=180)["state"] == "failed"
    tis = airflow_api.task_instances("faye_test", run_id)
    assert tis["test.wait_for_preview"]["state"] == "success"
    assert tis["test.run_tests"]["state"] == "failed"
    text = _log_text(airflow_api, "faye_test", run_id, "test.run_tests")
    # the test's own output, both streams, then one result line naming the exit code, server and time
    result = re.search(
        r"tests failed: exit code 3 on test server (test-\d) in \d+\.\d s \(failing PR 7 at aaaaaaa\)"
        r" - the tests' own output is in the lines above",
        text,
    )
    assert result, text[-3000:]
    lines = text.splitlines()  # whole lines: the logged command names the same words
    result_at = next(i for i, ln in enumerate(lines) if ln.startswith("tests failed: "))
    assert lines.index("failing on purpose") < lines.index("failing on stderr") < result_at
    assert "Traceback" not in text and "DockerContainerFailedException" not in text, text[-3000:]
    _assert_lease_lines_read_utc(text, result.group(1))
    # the run note names the step and the same line
    note = airflow_api.get(f"dags/faye_test/dagRuns/{run_id}")["note"]
    assert note.startswith("failed at test.run_tests: tests failed: exit code 3 on test server"), note


def _assert_lease_lines_read_utc(text: str, server: str) -> None:
    """The lease's log lines say UTC ISO times, never epoch seconds."""
    leased = re.search(rf"leased test server {server} at {ISO_UTC} \(.*until {ISO_UTC}\)", text)
    released = re.search(rf"released test server {server} at {ISO_UTC} \(held \d+\.\d s\)", text)
    assert leased and released, text[-3000:]
    lease_lines = [ln for ln in text.splitlines() if "test server" in ln or "lease" in ln]
    assert not [ln for ln in lease_lines if EPOCH.search(ln)], lease_lines


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, step in events:  # an end at the same instant as a start is counted first (-1 < 1)
        now += step
        best = max(best, now)
    return best


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


@pytest.mark.usefixtures("test_services", "synced_pool")
def test_four_test_runs_on_two_servers_never_share_a_server(
    stack: dict[str, Any], airflow_api: AirflowAPI
) -> None:
    runs = [
        _trigger(
            airflow_api,
            "faye_test",
            {"service": "sleeper", "pr": 10 + i, "git_sha": "b" * 40, "slot": SLOT},
            f"conc{i}",
            offset=i,
        )
        for i in range(4)
    ]
    for run_id in runs:
        assert airflow_api.wait_run("faye_test", run_id, timeout=240)["state"] == "success"
    intervals, leases = [], []
    for run_id in runs:
        ti = airflow_api.task_instances("faye_test", run_id)["test.run_tests"]
        assert ti["pool"] == "faye_test_servers"
        intervals.append((_ts(ti["start_date"]), _ts(ti["end_date"])))
        lease = _xcom(airflow_api, "faye_test", run_id, "test.run_tests", "lease")
        assert lease["holder"].startswith(f"faye_test/{run_id}/test.run_tests/")
        for key in ("acquired", "expires", "released"):  # what a person reads: UTC, not epochs
            assert re.fullmatch(ISO_UTC, str(lease[key])), lease
        acquired, released = epoch_of(lease["acquired"]), epoch_of(lease["released"])
        assert acquired < released
        leases.append({**lease, "acquired": acquired, "released": released})
        text = _log_text(airflow_api, "faye_test", run_id, "test.run_tests")
        pr = 10 + runs.index(run_id)
        passed = re.search(
            rf"tests passed: exit code 0 on test server {lease['server']} in \d+\.\d s "
            rf"\(sleeper PR {pr} at bbbbbbb\)",
            text,
        )
        assert passed, text[-3000:]
        lines = text.splitlines()  # whole lines: the logged command names the same words
        output = lines.index(f"tested sleeper pr {pr} at {'b' * 40}")
        result_at = next(i for i, ln in enumerate(lines) if ln.startswith("tests passed: "))
        assert output < lines.index("sleeper on stderr") < lines.index("finished") < result_at
        _assert_lease_lines_read_utc(text, lease["server"])
        result = _xcom(airflow_api, "faye_test", run_id, "test.run_tests", "return_value")
        assert result["passed"] is True and result["exit_code"] == 0 and result["server"] == lease["server"]
        assert result["last_line"] == "finished" and re.fullmatch(ISO_UTC, result["started"])
        assert 3 <= result["seconds"] < 120
    assert _max_overlap(intervals) <= len(stack["test_docker_urls"]) == 2
    servers = {lease["server"] for lease in leases}
    assert servers <= {"test-1", "test-2"}
    for server in servers:
        # The server's atomic container name is what excludes. The stamps lie inside each holder's
        # real holding: `acquired` when the create answered, `released` before the remove was sent.
        # So any overlap of the stamps is a real double lease.
        held = [(x["acquired"], x["released"]) for x in leases if x["server"] == server]
        assert _max_overlap(held) == 1, f"{server} was leased twice at once: {held}"


@pytest.mark.usefixtures("test_services", "synced_pool")
def test_a_test_killed_mid_run_frees_its_server(stack: dict[str, Any], airflow_api: AirflowAPI) -> None:
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.test_servers import TestServerHook

    servers = load_catalogue(Path(stack["catalogue"])).test_servers
    run_id = _trigger(
        airflow_api, "faye_test", {"service": "long", "pr": 9, "git_sha": "c" * 40, "slot": SLOT}, "kill"
    )
    held_on = None
    deadline = time.monotonic() + 120
    while held_on is None:
        assert time.monotonic() < deadline, "the long test never took a lease"
        for server in servers:
            lease = TestServerHook(server).current_lease()
            if lease and f"/{run_id}/" in lease.holder:
                held_on = server
        time.sleep(0.5)
    assert "long test started" in _wait_log(airflow_api, run_id, "long test started")
    resp = airflow_api.session.patch(
        f"{airflow_api.url}/api/v2/dags/faye_test/dagRuns/{run_id}", json={"state": "failed"}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    hook = TestServerHook(held_on)
    try:
        deadline = time.monotonic() + 60
        while (lease := hook.current_lease()) is not None and f"/{run_id}/" in lease.holder:
            assert time.monotonic() < deadline, f"{held_on.name} still leased to the killed run"
            time.sleep(0.5)
        left = hook.client.containers(all=True, filters={"label": "faye.test.holder"})
        assert not [c for c in left if f"/{run_id}/" in c["Labels"].get("faye.test.holder", "")]
        taken = hook.try_acquire("pytest/after-kill", 30)
        assert taken is not None and taken.server == held_on.name
        assert hook.release(taken)
    finally:  # never leave a lease behind for the next test, whatever failed above
        lease = hook.current_lease()
        if lease is not None and (f"/{run_id}/" in lease.holder or lease.holder == "pytest/after-kill"):
            hook.release(lease)
            hook.remove_test_containers(lease.holder)


def _ti(api: AirflowAPI, run_id: str) -> dict[str, Any]:
    return dict(api.get(f"dags/faye_test/dagRuns/{run_id}/taskInstances/test.run_tests"))


@pytest.mark.usefixtures("test_services", "synced_pool")
def test_a_test_killed_with_sigkill_frees_its_server_and_a_live_holder_keeps_its_lease(
    stack: dict[str, Any], airflow_api: AirflowAPI
) -> None:
    """No on_kill, no finally: the lease frees itself because its holder's task instance failed.
    Before the kill, a lease long past its ``expires`` but held by the running task is not taken."""
    import signal

    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.test_servers import TestServerHook, free_servers

    servers = load_catalogue(Path(stack["catalogue"])).test_servers
    run_id = _trigger(
        airflow_api, "faye_test", {"service": "long", "pr": 10, "git_sha": "c" * 40, "slot": SLOT}, "sigkill"
    )
    held_on, lease = None, None
    deadline = time.monotonic() + 120
    while held_on is None:
        assert time.monotonic() < deadline, "the long test never took a lease"
        for server in servers:
            found = TestServerHook(server).current_lease()
            if found and f"/{run_id}/" in found.holder:
                held_on, lease = server, found
        time.sleep(0.5)
    assert lease is not None and "long test started" in _wait_log(airflow_api, run_id, "long test started")
    other = next(s for s in servers if s.name != held_on.name)
    hook, other_hook = TestServerHook(held_on), TestServerHook(other)
    try:
        # the guarded case: a lease whose expiry passed long ago, held by the task that still runs
        stale_looking = other_hook.try_acquire(lease.holder, 0.01)
        assert stale_looking is not None
        time.sleep(0.1)
        assert stale_looking.expired() and _ti(airflow_api, run_id)["state"] == "running"
        assert other_hook.try_acquire("intruder", 30) is None
        assert hook.try_acquire("intruder", 30) is None
        assert free_servers([held_on, other]) == []
        # SIGKILL the task process itself (the TI's pid; its command line says it is the task)
        pid = _ti(airflow_api, run_id)["pid"]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert "airflow" in cmdline, cmdline
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        taken = None
        while taken is None:
            assert time.monotonic() - killed < 30, f"{held_on.name} still held 30 s after the SIGKILL"
            taken = hook.try_acquire("pytest/after-sigkill", 30)
            if taken is None:
                time.sleep(0.5)
        freed_after = time.monotonic() - killed
        print(f"server freed {freed_after:.1f} s after the SIGKILL ({_ti(airflow_api, run_id)['state']})")
        assert _ti(airflow_api, run_id)["state"] in ("failed", "up_for_retry")
        left = hook.client.containers(all=True, filters={"label": "faye.test.holder"})
        assert not [c for c in left if f"/{run_id}/" in c["Labels"].get("faye.test.holder", "")]
        # the hand-made lease of the dead holder is stale now too
        assert other.name in free_servers([held_on, other])
        assert hook.release(taken)
    finally:  # never leave a lease behind for the next test, whatever failed above
        for h in (hook, other_hook):
            left_lease = h.current_lease()
            if left_lease is not None and left_lease.holder in (
                lease.holder,
                "pytest/after-sigkill",
                "intruder",
            ):
                h.release(left_lease)
                h.remove_test_containers(left_lease.holder)


def _wait_log(api: AirflowAPI, run_id: str, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = _log_text(api, "faye_test", run_id, "test.run_tests")
        except requests.HTTPError:  # the log may not exist yet
            text = ""
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def test_leases_are_exclusive_under_a_race_and_an_expired_one_is_taken_over(
    stack: dict[str, Any],
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.test_servers import TestServerHook, acquire_any

    servers = load_catalogue(Path(stack["catalogue"])).test_servers
    hook = TestServerHook(servers[0])
    assert hook.current_lease() is None, "a lease was left behind by an earlier test"
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: TestServerHook(servers[0]).try_acquire(f"racer-{i}", 60), range(4)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    current = hook.current_lease()
    assert current is not None and current.holder == winners[0].holder
    # a holder that is not the owner cannot release it; the owner can
    stranger = dataclasses.replace(winners[0], container_id="0" * 64)
    assert not hook.release(stranger) and hook.current_lease() is not None
    assert hook.release(winners[0]) and hook.current_lease() is None
    # a lease that outlives its holder expires and is taken over, by one taker only
    dead = hook.try_acquire("killed-holder", 0.5)
    assert dead is not None and hook.try_acquire("early", 60) is None
    time.sleep(0.6)
    first = acquire_any(servers[:1], "taker", 60)
    assert first is not None and first[1].holder == "taker"
    assert acquire_any(servers[:1], "second-taker", 60) is None
    assert hook.release(first[1])


def test_a_server_that_refuses_leases_is_skipped_and_never_waited_for(stack: dict[str, Any]) -> None:
    """A server down or misconfigured (here: a lease image it lacks) is not worth waiting for: with a
    busy server beside it only the busy one is waited for; alone, the test fails naming the cause."""

    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.exceptions import TestServerUnavailableError
    from faye_plugin.hooks.test_servers import TestServerHook, acquire_any

    good = load_catalogue(Path(stack["catalogue"])).test_servers[0]
    down = dataclasses.replace(good, name="down", docker_url="unix:///nonexistent/faye.sock")
    with pytest.raises(TestServerUnavailableError) as err:
        acquire_any([down], "taker", 60, lease_image="localhost/faye-no-such-image:1")
    assert "down: " in str(err.value)
    with pytest.raises(TestServerUnavailableError, match="no test server can take a lease"):
        acquire_any([good], "taker", 60, lease_image="localhost/faye-no-such-image:1")
    hook = TestServerHook(good)
    held = hook.try_acquire("other-test", 60)
    assert held is not None
    try:
        busy: list[Any] = []
        assert acquire_any([down, good], "taker", 60, busy=busy) is None
        assert [s.name for s in busy] == [good.name]
    finally:
        assert hook.release(held)


@pytest.mark.usefixtures("test_services", "synced_pool")
def test_a_test_without_a_free_server_waits_deferred_and_resumes_when_one_frees(
    stack: dict[str, Any], airflow_api: AirflowAPI
) -> None:
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.test_servers import TestServerHook

    servers = load_catalogue(Path(stack["catalogue"])).test_servers
    squatters = [TestServerHook(s).try_acquire(f"squatter-{s.name}", 300) for s in servers]
    try:
        assert all(squatters), "a server was already leased"
        conf = {"service": "sleeper", "pr": 21, "git_sha": "d" * 40, "slot": SLOT}
        run_id = _trigger(airflow_api, "faye_test", conf, "deferred")
        deadline = time.monotonic() + 120
        while airflow_api.task_instances("faye_test", run_id)["test.run_tests"]["state"] != "deferred":
            assert time.monotonic() < deadline, "run_tests never deferred while every server was leased"
            time.sleep(0.5)
        # visibly queued: deferred in the pool (holding its slot), every server leased to someone else
        from faye_plugin.cli.pool import lease_rows

        assert airflow_api.get("pools/faye_test_servers")["deferred_slots"] == 1
        rows = lease_rows(Path(stack["catalogue"]))
        assert [(r["state"], r["holder"]) for r in rows] == [
            ("leased", f"squatter-{s.name}") for s in servers
        ]
        freed = squatters[-1]
        assert freed is not None and TestServerHook(servers[-1]).release(freed)
        assert airflow_api.wait_run("faye_test", run_id, timeout=120)["state"] == "success"
        lease = _xcom(airflow_api, "faye_test", run_id, "test.run_tests", "lease")
        assert lease["server"] == servers[-1].name
        assert epoch_of(lease["acquired"]) < epoch_of(lease["released"])
        assert TestServerHook(servers[-1]).current_lease() is None
    finally:
        for server, lease in zip(servers, squatters, strict=True):
            if lease is not None:
                TestServerHook(server).release(lease)
