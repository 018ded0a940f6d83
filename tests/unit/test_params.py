from __future__ import annotations

import pytest

from faye_plugin.exceptions import InvalidRequestError
from faye_plugin.params import (
    DEFAULTS,
    MAX_PR,
    MAX_TTL_HOURS,
    SCHEMAS,
    conf_problems,
    dag_params,
    request_problems,
    validate_request,
)


def test_valid_request_fills_defaults() -> None:
    req = validate_request({"service": "hello", "pr": 7, "git_sha": "a" * 40})
    assert (req.service, req.pr, req.tag, req.slot, req.force_build) == ("hello", 7, "pr-7", None, False)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidRequestError) as err:
        validate_request({"service": "Bad Name", "pr": 0, "git_sha": "xyz", "colour": "red"})
    message = str(err.value)
    for field in ("service", "pr", "git_sha", "colour"):
        assert field in message


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(InvalidRequestError, match="pr: required"):
        validate_request({"service": "hello", "git_sha": "abcdef1"})


def test_ttl_is_bounded() -> None:
    with pytest.raises(InvalidRequestError, match="ttl_hours"):
        validate_request({"service": "hello", "pr": 1, "git_sha": "abcdef1", "ttl_hours": 10_000})


def test_dag_params_cover_the_schema() -> None:
    params = dag_params()
    assert set(params) == set(SCHEMAS)
    assert params["pr"].schema["exclusiveMinimum"] == 0


def test_pr_beyond_int32_is_refused() -> None:
    validate_request({"service": "hello", "pr": 2**31 - 1, "git_sha": "abcdef1"})
    with pytest.raises(InvalidRequestError, match="pr"):
        validate_request({"service": "hello", "pr": 2**31, "git_sha": "abcdef1"})


def test_python_dollar_does_not_let_a_newline_through() -> None:
    with pytest.raises(InvalidRequestError, match="git_sha"):
        validate_request({"service": "hello", "pr": 1, "git_sha": "abcdef1\n"})
    with pytest.raises(InvalidRequestError, match="service"):
        validate_request({"service": "hello\n", "pr": 1, "git_sha": "abcdef1"})


def test_a_float_or_boolean_is_not_a_pr_number() -> None:
    for pr in (5.0, 5.5, True):
        with pytest.raises(InvalidRequestError, match="pr: "):
            validate_request({"service": "hello", "pr": pr, "git_sha": "abcdef1"})


def test_bounds_are_said_inclusively_and_huge_values_are_cut() -> None:
    problems = {
        p.field: p.message for p in request_problems({"service": "x" * 10_000, "pr": -1, "git_sha": "a" * 7})
    }
    assert problems["pr"] == "-1 is less than the minimum of 1"
    assert len(problems["service"]) < 200 and "(10002 chars)" in problems["service"]


def test_defaulted_fields_are_nullable_and_every_field_is_titled() -> None:
    # Airflow's form marks a field required unless its type includes "null"
    for name, schema in SCHEMAS.items():
        assert schema["title"] and len(schema["description"]) > 30, name
        nullable = isinstance(schema["type"], list) and "null" in schema["type"]
        assert nullable == (name in DEFAULTS), name
        # inclusive bounds are clamped by the form's number input: exclusive ones are not
        assert not {"minimum", "maximum"} & set(schema), name


def test_the_params_agree_with_the_gate() -> None:
    """What Airflow's own Param check accepts or refuses, the gate does too (for plain JSON values)."""
    from airflow.sdk.definitions.param import ParamsDict

    cases = [
        {"service": "hello", "pr": 1, "git_sha": "abcdef1"},
        {"service": "hello", "pr": 0, "git_sha": "abcdef1"},
        {"service": "hello", "pr": MAX_PR + 1, "git_sha": "abcdef1"},
        {"service": "hello", "pr": 3, "git_sha": "abcdef1", "priority": 101},
        {"service": "hello", "pr": 3, "git_sha": "abcdef1", "priority": None, "force_build": None},
        {"service": "Hello", "pr": 3, "git_sha": "abcdef1"},
        {"service": "hello", "pr": 3, "git_sha": "abcdef1", "ttl_hours": MAX_TTL_HOURS + 1},
    ]
    for conf in cases:
        params = ParamsDict(dag_params())
        try:
            params.update(conf)
            params.validate()
            airflow_ok = True
        except Exception:
            airflow_ok = False
        assert airflow_ok == (not request_problems(conf)), conf


def test_cleanup_takes_no_conf_and_other_dags_are_not_faye_s() -> None:
    assert conf_problems("faye_cleanup", None) == []
    assert [p.field for p in conf_problems("faye_cleanup", {"x": 1})] == ["x"]
    with pytest.raises(ValueError, match="not one of faye's DAGs"):
        conf_problems("other", {})


def test_the_catalogue_s_names_are_offered_as_examples(tmp_path, monkeypatch) -> None:
    import yaml

    doc = {
        "services": {
            name: {
                "cloud_run": {"project": "p", "region": "r"},
                "image": "i",
                "build": {"git_url": "/x"},
                "slots": slots,
            }
            for name, slots in {"hello": ["a", "b"], "api": ["b", "c"]}.items()
        }
    }
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("AIRFLOW__FAYE__CATALOGUE", str(path))
    params = dag_params()
    assert params["service"].schema["examples"] == ["api", "hello"]
    assert params["slot"].schema["examples"] == ["a", "b", "c"]
    monkeypatch.setenv("AIRFLOW__FAYE__CATALOGUE", str(tmp_path / "missing.yaml"))
    assert "examples" not in dag_params()["service"].schema  # the DAG file still parses


def test_teardown_and_rollback_confs_have_their_own_schema() -> None:
    from faye_plugin.params import ROLLBACK_DAG, TEARDOWN_DAG, action_params, validate_action

    assert conf_problems(TEARDOWN_DAG, {"service": "hello", "pr": 7}) == []
    assert validate_action(
        ROLLBACK_DAG, {"service": "hello", "pr": 7, "revision": "hello-pr-7-abcdef1"}
    ).revision
    problems = {
        p.field: p.message
        for p in conf_problems(
            TEARDOWN_DAG, {"service": "hello", "pr": 0, "git_sha": "a" * 7, "revision": "x"}
        )
    }
    assert set(problems) == {"pr", "git_sha", "revision"}  # a teardown takes no commit and no revision
    assert "unknown field" in problems["git_sha"]
    assert [p.field for p in conf_problems(ROLLBACK_DAG, {"pr": 7, "revision": "Bad_Name"})] == [
        "service",
        "revision",
    ]
    assert [p.field for p in conf_problems(TEARDOWN_DAG, None)] == ["service", "pr"]
    with pytest.raises(InvalidRequestError, match="pr: required"):
        validate_action(TEARDOWN_DAG, {"service": "hello"})
    assert set(action_params(ROLLBACK_DAG)) == {"service", "pr", "revision"}
    assert set(action_params(TEARDOWN_DAG)) == {"service", "pr"}
