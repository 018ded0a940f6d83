"""Run notes: the first word is the outcome; a superseded run says so in one wording."""

from __future__ import annotations

from faye_plugin import run_notes
from faye_plugin.queue import superseded_note as queue_superseded_note

CONF = {"service": "hello", "pr": 777, "git_sha": "74b5f9f0c1d2e3f405162738495a6b7c8d9e0f1a"}


def test_start_note_names_service_pr_sha_and_slot() -> None:
    assert run_notes.start_note({**CONF, "slot": "a"}) == "running: hello PR 777 at 74b5f9f, slot a"
    assert run_notes.start_note(CONF) == "running: hello PR 777 at 74b5f9f, slot: chosen by faye"
    assert run_notes.start_note({}) == "running"


def test_success_note_gives_the_preview_url_and_the_chosen_slot() -> None:
    outcome = {"noop": False, "slot": "b", "slot_url": "http://b.preview.localhost:1", "sha": CONF["git_sha"]}
    note = run_notes.end_note("faye_deploy", CONF, "success", "running: x", outcome=outcome)
    assert note == "deployed: http://b.preview.localhost:1 (hello PR 777 at 74b5f9f, slot b)"


def test_noop_note_says_no_change() -> None:
    outcome = {"noop": True, "slot": "a", "slot_url": "http://a.p:1", "sha": CONF["git_sha"]}
    note = run_notes.end_note("faye_deploy", CONF, "success", None, outcome=outcome)
    assert note == "no change: already serving 74b5f9f at http://a.p:1 (hello PR 777, slot a)"


def test_failed_note_names_the_step_and_one_line_reason() -> None:
    reason = "unknown commit 'dead': not in the repository - fix the request's conf\nTraceback ..."
    note = run_notes.end_note(
        "faye_deploy", CONF, "failed", "running: x", failed_task="get_cloud_run_config", reason=reason
    )
    assert note == (
        "failed at get_cloud_run_config: unknown commit 'dead': not in the repository"
        " - fix the request's conf (hello PR 777 at 74b5f9f, slot: chosen by faye)"
    )
    unknown = run_notes.end_note("faye_deploy", CONF, "failed", None, failed_task="check_image")
    assert unknown is not None and unknown.startswith("failed at check_image: see the step's log")


def test_every_past_superseded_wording_ends_as_one() -> None:
    wordings = [
        queue_superseded_note("hello-pr-1-abc1234-20261201T000000.000Z", "a newer deploy of the same PR"),
        queue_superseded_note(
            "hello-pr-1-abc1234-20261201T000000.000Z",
            "superseded by hello-pr-1-abc1234-20261201T000000.000Z (sha abc), a newer deploy of the same PR",
        ),
        "superseded by hello-pr-1-abc1234-20261201T000000.000Z",
    ]
    for state in ("failed", "success"):  # a pending teardown can end a superseded run as success
        notes = {run_notes.end_note("faye_deploy", CONF, state, w) for w in wordings}
        assert notes == {"superseded by hello-pr-1-abc1234-20261201T000000.000Z"}


def test_superseded_by_reads_run_ids_with_colons() -> None:
    note = queue_superseded_note("manual__2026-12-01T21:14:46+00:00", "a newer deploy")
    assert run_notes.superseded_by(note) == "manual__2026-12-01T21:14:46+00:00"
    assert run_notes.superseded_by("failed at x: y") is None


def test_a_note_fits_airflows_column() -> None:
    note = run_notes.failed_note(CONF, "t", "x" * 5000)
    assert len(note) <= run_notes.NOTE_MAX


def test_teardown_and_rollback_notes() -> None:
    conf = {"service": "hello", "pr": 7}
    assert run_notes.start_note(conf, "faye_teardown") == "running: teardown of hello PR 7"
    assert (
        run_notes.start_note({**conf, "revision": "hello-pr-7-abc"}, "faye_rollback")
        == "running: rollback of hello PR 7 to hello-pr-7-abc"
    )
    gone = {"routes_removed": ["a"], "tag": "pr-7", "tag_removed": True, "record_removed": True}
    assert (
        run_notes.success_note("faye_teardown", conf, gone)
        == "torn down: hello PR 7 (route a, tag pr-7, record)"
    )
    assert (
        run_notes.success_note("faye_teardown", conf, {"noop": True})
        == "no change: hello PR 7 has no preview"
    )
    rolled = {
        "slot_url": "http://a.x",
        "sha": "a" * 40,
        "revision": "hello-pr-7-aaaaaaa",
        "from_sha": "b" * 40,
    }
    assert run_notes.success_note("faye_rollback", conf, rolled) == (
        "rolled back: http://a.x now serves aaaaaaa (hello PR 7, revision hello-pr-7-aaaaaaa, was bbbbbbb)"
    )
    assert run_notes.failed_note(conf, "roll_back", "no ready revision") == (
        "failed at roll_back: no ready revision (hello PR 7)"
    )
