"""The trigger gate on the real api-server: a corpus of bad triggers, each refused with HTTP 400 naming
every fault, no run created, never a 500; a null ``logical_date`` gets the trigger time.

One stack, one loop of HTTP calls (a few seconds). The catalogue is the stack's: service ``hello``,
slots ``a``, ``b``, ``c``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest
import requests
from faye_testing import AirflowAPI

pytestmark = pytest.mark.integration

SHA = "a" * 40
GOOD = {"service": "hello", "pr": 77001, "git_sha": SHA}
HUGE = "x" * 200_000
INJECTIONS = [
    "hello; rm -rf /",
    "hello' OR '1'='1",
    "$(touch /tmp/faye-pwned)",
    "`id`",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "hello\nworld",
    "hello\u0000",
    "héllo",
]


def _with(**changes: Any) -> dict[str, Any]:
    conf = {**GOOD, **changes}
    return {k: v for k, v in conf.items() if v is not ...}


# (dag_id, conf, the fields the answer must name: exactly these)
CORPUS: list[tuple[str, Any, set[str]]] = [
    # types
    ("faye_deploy", _with(pr="5"), {"pr"}),
    ("faye_deploy", _with(pr=5.0), {"pr"}),
    ("faye_deploy", _with(pr=5.5), {"pr"}),
    ("faye_deploy", _with(pr=True), {"pr"}),
    ("faye_deploy", _with(pr=[5]), {"pr"}),
    ("faye_deploy", _with(pr={"n": 5}), {"pr"}),
    ("faye_deploy", _with(service=5), {"service"}),
    ("faye_deploy", _with(service=["hello"]), {"service"}),
    ("faye_deploy", _with(git_sha=1234567), {"git_sha"}),
    ("faye_deploy", _with(slot=1), {"slot"}),
    ("faye_deploy", _with(ttl_hours="24"), {"ttl_hours"}),
    ("faye_deploy", _with(force_build="yes"), {"force_build"}),
    ("faye_deploy", _with(force_build=1), {"force_build"}),
    ("faye_deploy", _with(priority="high"), {"priority"}),
    # patterns
    ("faye_deploy", _with(service="Hello"), {"service"}),
    ("faye_deploy", _with(service="-hello"), {"service"}),
    ("faye_deploy", _with(service="hello_world"), {"service"}),
    ("faye_deploy", _with(git_sha="not-a-sha"), {"git_sha"}),
    ("faye_deploy", _with(git_sha="ABCDEF1"), {"git_sha"}),
    ("faye_deploy", _with(git_sha="abc12"), {"git_sha"}),
    ("faye_deploy", _with(git_sha="a" * 41), {"git_sha"}),
    ("faye_deploy", _with(git_sha="abcdef1\n"), {"git_sha"}),
    ("faye_deploy", _with(slot="A"), {"slot"}),
    ("faye_deploy", _with(slot="a-"), {"slot"}),
    # bounds
    ("faye_deploy", _with(pr=0), {"pr"}),
    ("faye_deploy", _with(pr=-1), {"pr"}),
    ("faye_deploy", _with(pr=2**31), {"pr"}),
    ("faye_deploy", _with(ttl_hours=0), {"ttl_hours"}),
    ("faye_deploy", _with(ttl_hours=721), {"ttl_hours"}),
    ("faye_deploy", _with(priority=-1), {"priority"}),
    ("faye_deploy", _with(priority=101), {"priority"}),
    # unknown keys
    ("faye_deploy", _with(sevice="x"), {"sevice"}),
    ("faye_deploy", _with(logical_date="2026-01-01T00:00:00Z"), {"logical_date"}),
    ("faye_deploy", _with(**{"": 1}), {'""'}),
    ("faye_deploy", _with(**{"a b": 1, "c": 2}), {'"a b"', "c"}),
    ("faye_build", _with(dry_run=True), {"dry_run"}),
    ("faye_test", _with(timeout=5), {"timeout"}),
    ("faye_cleanup", {"service": "hello"}, {"service"}),
    ("faye_cleanup", {"dry_run": True, "pr": 1}, {"dry_run", "pr"}),
    # unknown names (the catalogue)
    ("faye_deploy", _with(service="nosuch"), {"service"}),
    ("faye_build", _with(service="nosuch"), {"service"}),
    ("faye_test", _with(service="nosuch"), {"service"}),
    ("faye_deploy", _with(slot="zz"), {"slot"}),
    ("faye_test", _with(slot="d"), {"slot"}),
    ("faye_deploy", _with(service="nosuch", slot="a"), {"service"}),
    # missing fields
    ("faye_deploy", {}, {"service", "pr", "git_sha"}),
    ("faye_deploy", None, {"service", "pr", "git_sha"}),
    ("faye_deploy", _with(service=...), {"service"}),
    ("faye_build", _with(pr=...), {"pr"}),
    ("faye_test", _with(git_sha=...), {"git_sha"}),
    ("faye_deploy", _with(pr=None, git_sha=None), {"pr", "git_sha"}),
    # huge values
    ("faye_deploy", _with(service=HUGE), {"service"}),
    ("faye_deploy", _with(git_sha="a" * 100_000), {"git_sha"}),
    ("faye_deploy", _with(pr=10**100), {"pr"}),
    ("faye_deploy", _with(slot=HUGE), {"slot"}),
    ("faye_deploy", _with(**{f"k{i}": i for i in range(500)}), {f"k{i}" for i in range(500)}),
    # wrong JSON types at the top level
    ("faye_deploy", [GOOD], {"conf"}),
    ("faye_deploy", "service=hello", {"conf"}),
    ("faye_deploy", 5, {"conf"}),
    ("faye_deploy", True, {"conf"}),
    ("faye_cleanup", [], {"conf"}),
    # several faults at once, every one named
    (
        "faye_deploy",
        {"service": "nosuch", "pr": 0, "git_sha": "xyz", "sevice": 1, "priority": 500, "ttl_hours": -5},
        {"service", "pr", "git_sha", "sevice", "priority", "ttl_hours"},
    ),
    (
        "faye_test",
        {"pr": -3, "slot": "UPPER", "force_build": "no"},
        {"service", "pr", "git_sha", "slot", "force_build"},
    ),
    # injection strings
    *[("faye_deploy", _with(service=s), {"service"}) for s in INJECTIONS],
    *[("faye_build", _with(git_sha=s), {"git_sha"}) for s in INJECTIONS[:5]],
    *[("faye_test", _with(slot=s), {"slot"}) for s in INJECTIONS[:5]],
]
#: The unknown keys beyond the 20 named one by one are counted under "conf".
MANY_KEYS = {f"k{i}" for i in range(500)}


def _post(api: AirflowAPI, dag_id: str, body: bytes, **headers: str) -> requests.Response:
    return api.session.post(
        f"{api.url}/api/v2/dags/{dag_id}/dagRuns",
        data=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
    )


def _runs(api: AirflowAPI) -> dict[str, int]:
    """The triggered (manual) runs of each DAG: faye_cleanup's schedule may add a run meanwhile (CI saw
    its 15-minute run land in the middle of the corpus), and a refused trigger must add none."""
    dags = ("faye_deploy", "faye_build", "faye_test", "faye_cleanup")
    return {
        dag: api.get(f"dags/{dag}/dagRuns", limit=1, run_type=["manual"])["total_entries"] for dag in dags
    }


def test_every_bad_trigger_is_refused_naming_every_fault(stack, airflow_api) -> None:
    assert len(CORPUS) >= 60
    before = _runs(airflow_api)
    started = time.monotonic()
    wrong: list[str] = []
    for dag_id, conf, fields in CORPUS:
        body = json.dumps({"logical_date": None, "conf": conf}).encode()
        resp = _post(airflow_api, dag_id, body)
        if resp.status_code != 400:
            wrong.append(f"{dag_id} {str(conf)[:80]}: HTTP {resp.status_code} {resp.text[:300]}")
            continue
        answer = resp.json()
        named = {p["field"] for p in answer["problems"]}
        if fields == MANY_KEYS:  # 20 named one by one, the rest counted
            ok = (
                len(named - {"conf"}) == 20
                and named - {"conf"} <= MANY_KEYS
                and "480 more" in answer["detail"]
            )
        else:
            ok = named == fields and all(f in answer["detail"] for f in fields)
        if not ok:
            wrong.append(
                f"{dag_id} {str(conf)[:80]}: named {sorted(named)[:10]}, expected {sorted(fields)[:10]}"
            )
        if len(resp.content) > 20_000:
            wrong.append(f"{dag_id} {str(conf)[:80]}: a {len(resp.content)}-byte answer echoes the value")
    elapsed = time.monotonic() - started
    assert not wrong, "\n".join(wrong)
    assert _runs(airflow_api) == before
    print(f"{len(CORPUS)} bad triggers refused in {elapsed:.1f} s")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"\xff\xfe{}", 400),
        (b"[]", 400),
        (
            b'{"logical_date": null, "conf": {"service": "hello", "pr": 1, "pr": -1, "git_sha": "abcdef1"}}',
            400,
        ),
        (b'{"logical_date": null, "conf": {"service": "hello", "pr": NaN, "git_sha": "abcdef1"}}', 400),
        (b'{"logical_date": null, "conf": {"pr": ' + b"9" * 5000 + b"}}", 400),
        (b'{"logical_date": null, "conf": {"service": "' + b"x" * 300_000 + b'"}}', 413),
    ],
)
def test_bodies_that_are_not_a_trigger_are_refused(stack, airflow_api, body: bytes, status: int) -> None:
    before = _runs(airflow_api)["faye_deploy"]
    resp = _post(airflow_api, "faye_deploy", body)
    assert resp.status_code == status, resp.text[:500]
    assert "detail" in resp.json()
    assert _runs(airflow_api)["faye_deploy"] == before


def test_the_ui_path_is_gated_and_strangers_learn_nothing(stack, airflow_api) -> None:
    """The UI posts to the same route with its session cookie and a Referer; no token: Airflow's 401."""
    token = airflow_api.session.headers["Authorization"].removeprefix("Bearer ")
    body = json.dumps({"logical_date": None, "conf": _with(service="nosuch")}).encode()
    as_ui = requests.post(
        f"{airflow_api.url}/api/v2/dags/faye_deploy/dagRuns",
        data=body,
        headers={"Content-Type": "application/json", "Referer": f"{airflow_api.url}/dags/faye_deploy"},
        cookies={"_token": token},
        timeout=30,
    )
    assert as_ui.status_code == 400 and "unknown service 'nosuch'" in as_ui.json()["detail"]
    stranger = requests.post(
        f"{airflow_api.url}/api/v2/dags/faye_deploy/dagRuns",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert stranger.status_code == 401 and "hello" not in stranger.text


def test_a_null_logical_date_gets_the_trigger_time(stack, airflow_api) -> None:
    """faye_test for a PR with no preview: valid, so it runs (and fails in resolve_preview at once)."""
    runs = []
    for n in range(2):
        sent = datetime.now().astimezone()
        body = (
            {"logical_date": None, "conf": {**GOOD, "pr": 77100 + n}}
            if n
            else {"conf": {**GOOD, "pr": 77100}}
        )
        resp = _post(airflow_api, "faye_test", json.dumps(body).encode())
        answered = datetime.now().astimezone()
        assert resp.status_code == 200, resp.text
        run = resp.json()
        logical = datetime.fromisoformat(run["logical_date"].replace("Z", "+00:00"))
        assert sent <= logical <= answered, (sent, logical, answered)
        runs.append(run)
    assert runs[0]["logical_date"] < runs[1]["logical_date"]  # first come, first served
    for run in runs:  # nothing to wait for: stop them
        airflow_api.session.patch(
            f"{airflow_api.url}/api/v2/dags/faye_test/dagRuns/{run['dag_run_id']}",
            json={"state": "failed"},
            timeout=30,
        )


def test_the_trigger_form_s_params_are_titled_optional_where_defaulted_and_offer_the_catalogue(
    stack, airflow_api
) -> None:
    """What the UI's form is built from, as the REST API serves it."""
    for dag_id in ("faye_deploy", "faye_build", "faye_test"):
        params = airflow_api.get(f"dags/{dag_id}/details")["params"]
        schemas = {name: p.get("schema", p) for name, p in params.items()}
        assert set(schemas) == {"service", "pr", "git_sha", "slot", "ttl_hours", "force_build", "priority"}
        for name, schema in schemas.items():
            assert schema.get("title") and params[name].get("description"), (dag_id, name)
            required = not (isinstance(schema["type"], list) and "null" in schema["type"])
            assert required == (name in ("service", "pr", "git_sha")), (dag_id, name)
            assert "minimum" not in schema and "maximum" not in schema, (
                dag_id,
                name,
            )  # the form clamps those
        assert "hello" in schemas["service"]["examples"] and {"a", "b", "c"} <= set(
            schemas["slot"]["examples"]
        )
        assert schemas["pr"]["exclusiveMinimum"] == 0
