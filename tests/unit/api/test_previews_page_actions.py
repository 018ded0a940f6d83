"""The previews page's tear-down and roll-back buttons, without a stack: the HTML and the conf check."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from faye_plugin.exceptions import InvalidRequestError

CATALOGUE = {
    "services": {
        "hello": {
            "cloud_run": {"project": "local", "region": "europe-west1"},
            "image": "127.0.0.1:5000/hello",
            "build": {"git_url": "/tmp/hello"},
            "slots": ["a", "b"],
        }
    },
}


@pytest.fixture(autouse=True)
def catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(CATALOGUE))
    monkeypatch.setenv("AIRFLOW__FAYE__CATALOGUE", str(path))


def test_each_row_has_pin_rollback_and_teardown_buttons() -> None:
    from faye_plugin.api.previews_page import ACTION_HEADER, render

    row = {"service": "hello", "pr": 7, "slot": "a", "sha": "a" * 40, "pinned": False}
    page = render([row], {}, "http://x")
    for action in ("pin", "rollback", "teardown"):
        assert f'data-service="hello" data-pr="7" data-action="{action}"' in page
    assert f'"{ACTION_HEADER}": "1"' in page and "confirm(" in page


def test_an_action_on_an_unknown_service_is_refused_before_any_run() -> None:
    from faye_plugin.api.previews_page import ACTION_DAGS, trigger_action

    assert ACTION_DAGS == {"teardown": "faye_teardown", "rollback": "faye_rollback"}
    with pytest.raises(InvalidRequestError, match="unknown service 'nosuch'"):
        trigger_action(None, "faye_teardown", "nosuch", 7)
