from __future__ import annotations

import pytest

from faye_plugin.exceptions import InvalidRequestError
from faye_plugin.params import SCHEMAS, dag_params, validate_request


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
    assert params["pr"].schema["minimum"] == 1


def test_pr_beyond_int32_is_refused() -> None:
    validate_request({"service": "hello", "pr": 2**31 - 1, "git_sha": "abcdef1"})
    with pytest.raises(InvalidRequestError, match="pr"):
        validate_request({"service": "hello", "pr": 2**31, "git_sha": "abcdef1"})
