"""Which revision a rollback goes back to, and which revisions cleanup keeps for it (faye_plugin.rollback)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from faye_plugin.exceptions import RollbackError
from faye_plugin.rollback import (
    RevisionInfo,
    choose_target,
    kept_for_rollback,
    ready_revisions,
    revision_info,
)


def rev(name: str, created: float, pr: int | None = 7, ready: bool = True, sha: str = "") -> RevisionInfo:
    return RevisionInfo(name=name, pr=pr, sha=sha or name[-1] * 40, created=created, ready=ready)


REVISIONS = [
    rev("hello-pr-7-aaaaaaa", 1),
    rev("hello-pr-7-bbbbbbb", 2),
    rev("hello-pr-7-ccccccc", 3, ready=False),  # never became ready
    rev("hello-pr-7-ddddddd", 4),
    rev("hello-pr-9-eeeeeee", 5, pr=9),
    rev("hello-00001-abc", 0, pr=None),  # production
]


def test_the_previous_ready_revision_is_chosen_newest_first() -> None:
    assert [r.name for r in ready_revisions(REVISIONS, 7)] == [
        "hello-pr-7-ddddddd",
        "hello-pr-7-bbbbbbb",
        "hello-pr-7-aaaaaaa",
    ]
    chosen = choose_target(REVISIONS, service="hello", pr=7, current="hello-pr-7-ddddddd")
    assert chosen.name == "hello-pr-7-bbbbbbb" and chosen.sha == "b" * 40
    # after one rollback, the next goes further back (not forward to the newer one)
    assert choose_target(REVISIONS, service="hello", pr=7, current="hello-pr-7-bbbbbbb").name.endswith("a")


def test_no_earlier_ready_revision_says_what_to_do() -> None:
    with pytest.raises(RollbackError, match=r"no ready revision older than hello-pr-7-aaaaaaa.*faye deploy"):
        choose_target(REVISIONS, service="hello", pr=7, current="hello-pr-7-aaaaaaa")
    with pytest.raises(RollbackError, match="has no preview to roll back"):
        choose_target(REVISIONS, service="hello", pr=7, current=None)


def test_to_must_be_a_ready_revision_of_this_pr_and_service() -> None:
    assert choose_target(
        REVISIONS, service="hello", pr=7, current="hello-pr-7-bbbbbbb", to="hello-pr-7-ddddddd"
    )
    cases = {
        "hello-pr-9-eeeeeee": "is PR 9's, not PR 7's",
        "hello-00001-abc": "is not a preview revision",
        "other-pr-7-aaaaaaa": "is not a revision of service hello",
        "hello-pr-7-ccccccc": "is not ready",
        "hello-pr-7-ddddddd": "already serves",
    }
    for to, words in cases.items():
        with pytest.raises(RollbackError, match=words):
            choose_target(REVISIONS, service="hello", pr=7, current="hello-pr-7-ddddddd", to=to)


def test_cleanup_keeps_each_previews_rollback_target() -> None:
    served = {7: "hello-pr-7-ddddddd", 9: "hello-pr-9-eeeeeee"}
    assert kept_for_rollback(REVISIONS, served) == {"hello-pr-7-bbbbbbb"}


def test_revision_info_reads_labels_readiness_and_time() -> None:
    from google.cloud import run_v2

    revision = run_v2.Revision(
        name="projects/p/locations/r/services/hello/revisions/hello-pr-7-aaaaaaa",
        labels={"faye-pr": "7", "faye-sha": "a" * 40},
        conditions=[run_v2.Condition(type_="Ready", state=run_v2.Condition.State.CONDITION_SUCCEEDED)],
        create_time=datetime(2026, 12, 1, tzinfo=UTC),
    )
    info = revision_info(revision)
    assert (info.name, info.pr, info.sha, info.ready) == ("hello-pr-7-aaaaaaa", 7, "a" * 40, True)
    assert info.created == datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    failed = SimpleNamespace(
        name="x/revisions/r",
        labels={},
        create_time=None,
        conditions=[SimpleNamespace(type_="Ready", state="CONDITION_FAILED")],
    )
    assert revision_info(failed) == RevisionInfo("r", None, "", 0.0, False)
