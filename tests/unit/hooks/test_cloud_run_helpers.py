"""The pure Cloud Run preview model: limits and traffic rewrites."""

from __future__ import annotations

import pytest
from google.cloud import run_v2

from faye_plugin.exceptions import CloudRunLimitError
from faye_plugin.hooks.cloud_run import (
    check_labels,
    check_service_name,
    check_tag_limits,
    preview_tag,
    revision_name,
    served_revision,
    service_path,
    tag_revision,
    tag_uri,
    tags,
    with_preview_revision,
    with_tag_on,
    without_tag,
)

LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
NAME = service_path("p", "europe-west1", "hello")
SHA = "0123456789abcdef0123456789abcdef01234567"


def serving(traffic: list[run_v2.TrafficTarget], *, ready: str = "hello-00001-abc") -> run_v2.Service:
    """An existing service whose production revision ``ready`` is ready."""
    return run_v2.Service(
        name=NAME,
        template=run_v2.RevisionTemplate(
            revision="",
            labels={"team": "web", "faye-pr": "7", "faye-slot": "b"},
            containers=[
                run_v2.Container(
                    image="old:1",
                    env=[
                        run_v2.EnvVar(name="GREETING", value="prod"),
                        run_v2.EnvVar(
                            name="DB_PASSWORD",
                            value_source=run_v2.EnvVarSource(
                                secret_key_ref=run_v2.SecretKeySelector(secret="db", version="latest")
                            ),
                        ),
                    ],
                )
            ],
        ),
        traffic=traffic,
        latest_ready_revision=f"{NAME}/revisions/{ready}",
        latest_created_revision=f"{NAME}/revisions/{ready}",
        etag='"e1"',
    )


def deploy(service: run_v2.Service, pr: int = 1) -> run_v2.Service:
    return with_preview_revision(
        service,
        revision=revision_name("hello", pr, SHA),
        image="reg/hello@sha256:aa",
        env={"GREETING": f"hello from PR {pr}"},
        labels={"faye-pr": str(pr), "faye-sha": SHA},
        tag=preview_tag(pr),
    )


def summary(service: run_v2.Service) -> list[tuple[str, str, int, str]]:
    return [(t.type_.name.rsplit("_", 1)[-1], t.revision, t.percent, t.tag) for t in service.traffic]


# --- limits ----------------------------------------------------------------------------------------


def test_preview_tag_is_pr_dash_number() -> None:
    assert preview_tag(42) == "pr-42"
    for bad in (0, -1, True):
        with pytest.raises(CloudRunLimitError):
            preview_tag(bad)


def test_tag_plus_service_name_is_capped_at_46() -> None:
    check_tag_limits("pr-1", "s" * 42)  # 4 + 42 = 46: allowed
    with pytest.raises(CloudRunLimitError, match="46"):
        check_tag_limits("pr-12", "s" * 42)
    # a full resource name counts only its last segment
    check_tag_limits("pr-1", service_path("a-long-project-name", "europe-west1", "s" * 42))


@pytest.mark.parametrize("tag", ["PR-1", "pr_1", "1pr", "pr-", "pr.1", "prä"])
def test_tag_must_be_a_lowercase_dns_label(tag: str) -> None:
    with pytest.raises(CloudRunLimitError, match="DNS label"):
        check_tag_limits(tag, "hello")


def test_tag_needs_three_characters() -> None:
    with pytest.raises(CloudRunLimitError, match="at least 3"):
        check_tag_limits("pr", "hello")
    check_tag_limits("pr1", "hello")


def test_service_name_limits() -> None:
    check_service_name("s" * 49)
    with pytest.raises(CloudRunLimitError, match="49"):
        check_service_name("s" * 50)
    with pytest.raises(CloudRunLimitError):
        check_service_name("Hello")


def test_revision_name_is_deterministic_and_bounded() -> None:
    assert revision_name("hello", 1, SHA) == "hello-pr-1-0123456"
    assert revision_name(NAME, 1, SHA.upper()) == "hello-pr-1-0123456"
    assert revision_name("hello", 1, SHA, "r2") == "hello-pr-1-0123456-r2"
    with pytest.raises(CloudRunLimitError, match="63"):
        revision_name("s" * 49, 123456, SHA, "abcdef")
    with pytest.raises(CloudRunLimitError, match="hexadecimal"):
        revision_name("hello", 1, "not-a-sha")
    with pytest.raises(CloudRunLimitError, match="suffix"):
        revision_name("hello", 1, SHA, "R-2")


def test_labels_must_be_valid_google_labels() -> None:
    check_labels({"faye-pr": "12", "faye-sha": SHA, "faye-slot": ""})
    with pytest.raises(CloudRunLimitError, match="key"):
        check_labels({"Faye": "x"})
    with pytest.raises(CloudRunLimitError, match="values"):
        check_labels({"faye-expires": "2026-01-01T00:00:00Z"})


def test_preview_deploy_refuses_a_bad_tag_before_changing_anything() -> None:
    service = serving([run_v2.TrafficTarget(type_=LATEST, percent=100)])
    with pytest.raises(CloudRunLimitError):
        with_preview_revision(
            service, revision="hello-pr-1-0123456", image="i", env={}, labels={}, tag="PR-1"
        )
    with pytest.raises(CloudRunLimitError, match="start with 'hello-'"):
        with_preview_revision(service, revision="other-pr-1", image="i", env={}, labels={}, tag="pr-1")


# --- traffic rewrites ----------------------------------------------------------------------------


def test_new_service_serves_the_preview_at_100_percent_with_its_tag() -> None:
    new = deploy(run_v2.Service(name=NAME))
    assert summary(new) == [("REVISION", "hello-pr-1-0123456", 100, "pr-1")]
    assert new.template.revision == "hello-pr-1-0123456"
    assert new.template.containers[0].image == "reg/hello@sha256:aa"


def test_latest_target_is_pinned_so_the_preview_gets_no_traffic() -> None:
    service = serving([run_v2.TrafficTarget(type_=LATEST, percent=100)])
    new = deploy(service)
    assert summary(new) == [
        ("REVISION", "hello-00001-abc", 100, ""),
        ("REVISION", "hello-pr-1-0123456", 0, "pr-1"),
    ]
    # the input is not changed
    assert summary(service) == [("LATEST", "", 100, "")]


def test_empty_traffic_on_an_existing_service_means_latest() -> None:
    new = deploy(serving([]))
    assert summary(new) == [
        ("REVISION", "hello-00001-abc", 100, ""),
        ("REVISION", "hello-pr-1-0123456", 0, "pr-1"),
    ]


def test_split_traffic_and_other_tags_are_kept() -> None:
    service = serving(
        [
            run_v2.TrafficTarget(type_=REVISION, revision="hello-00001-abc", percent=90),
            run_v2.TrafficTarget(type_=REVISION, revision="hello-00002-def", percent=10, tag="canary"),
            run_v2.TrafficTarget(type_=REVISION, revision="hello-pr-2-aaaaaaa", tag="pr-2"),
        ]
    )
    new = deploy(service)
    assert summary(new) == [
        ("REVISION", "hello-00001-abc", 90, ""),
        ("REVISION", "hello-00002-def", 10, "canary"),
        ("REVISION", "hello-pr-2-aaaaaaa", 0, "pr-2"),
        ("REVISION", "hello-pr-1-0123456", 0, "pr-1"),
    ]
    assert sum(t.percent for t in new.traffic) == 100


def test_redeploy_moves_the_tag_and_drops_the_empty_old_target() -> None:
    service = serving(
        [
            run_v2.TrafficTarget(type_=REVISION, revision="hello-00001-abc", percent=100),
            run_v2.TrafficTarget(type_=REVISION, revision="hello-pr-1-fffffff", tag="pr-1"),
        ]
    )
    new = deploy(service)
    assert summary(new) == [
        ("REVISION", "hello-00001-abc", 100, ""),
        ("REVISION", "hello-pr-1-0123456", 0, "pr-1"),
    ]


def test_redeploy_on_a_service_the_preview_created_keeps_its_percent() -> None:
    first = deploy(run_v2.Service(name=NAME))
    first.latest_ready_revision = f"{NAME}/revisions/hello-pr-1-0123456"
    again = deploy(first)
    # the same revision keeps serving 100% and keeps its tag; no duplicate target appears
    assert summary(again) == [("REVISION", "hello-pr-1-0123456", 100, "pr-1")]


def test_template_copies_the_current_one_and_sets_preview_fields() -> None:
    new = deploy(serving([]), pr=3)
    container = new.template.containers[0]
    env = {e.name: (e.value or e.value_source.secret_key_ref.secret) for e in container.env}
    assert env == {"GREETING": "hello from PR 3", "DB_PASSWORD": "db"}
    assert dict(new.template.labels) == {"team": "web", "faye-pr": "3", "faye-sha": SHA}
    assert new.etag == '"e1"'


def test_port_is_set_when_given() -> None:
    new = with_preview_revision(
        run_v2.Service(name=NAME),
        revision="hello-pr-1-x",
        image="i",
        env={},
        labels={},
        tag="pr-1",
        port=9000,
    )
    assert [p.container_port for p in new.template.containers[0].ports] == [9000]


def test_without_tag_removes_only_that_tag_and_never_moves_traffic() -> None:
    service = serving(
        [
            run_v2.TrafficTarget(type_=REVISION, revision="hello-00001-abc", percent=100, tag="prod"),
            run_v2.TrafficTarget(type_=REVISION, revision="hello-pr-1-0123456", tag="pr-1"),
            run_v2.TrafficTarget(type_=REVISION, revision="hello-pr-2-aaaaaaa", tag="pr-2"),
        ]
    )
    new = without_tag(service, "pr-1")
    assert summary(new) == [
        ("REVISION", "hello-00001-abc", 100, "prod"),
        ("REVISION", "hello-pr-2-aaaaaaa", 0, "pr-2"),
    ]
    # a tag on a serving target goes, the percent stays
    assert summary(without_tag(new, "prod")) == [
        ("REVISION", "hello-00001-abc", 100, ""),
        ("REVISION", "hello-pr-2-aaaaaaa", 0, "pr-2"),
    ]
    assert summary(without_tag(service, "pr-9")) == summary(service)


def test_a_failed_deploy_puts_the_tag_back_on_what_cloud_run_serves() -> None:
    """The spec names the revision that never became ready; the status still names the old one."""
    failed, old = "hello-pr-1-bbbbbbb", "hello-pr-1-aaaaaaa"
    service = serving(
        [
            run_v2.TrafficTarget(type_=REVISION, revision="hello-00001-abc", percent=100),
            run_v2.TrafficTarget(type_=REVISION, revision=failed, tag="pr-1"),
            run_v2.TrafficTarget(type_=REVISION, revision="hello-pr-2-ccccccc", tag="pr-2"),
        ]
    )
    service.traffic_statuses = [
        run_v2.TrafficTargetStatus(type_=REVISION, revision="hello-00001-abc", percent=100),
        run_v2.TrafficTargetStatus(type_=REVISION, revision=old, tag="pr-1", uri="http://pr-1---h"),
        run_v2.TrafficTargetStatus(type_=REVISION, revision="hello-pr-2-ccccccc", tag="pr-2", uri="u"),
    ]
    assert tag_revision(service, "pr-1") == old and served_revision(service, "pr-1") == old
    assert served_revision(service, "pr-9") is None
    assert summary(with_tag_on(service, "pr-1", old)) == [
        ("REVISION", "hello-00001-abc", 100, ""),
        ("REVISION", "hello-pr-2-ccccccc", 0, "pr-2"),
        ("REVISION", old, 0, "pr-1"),
    ]
    # nothing served it before (a new PR): the tag goes, production's percent never moves
    assert summary(with_tag_on(service, "pr-1", None)) == [
        ("REVISION", "hello-00001-abc", 100, ""),
        ("REVISION", "hello-pr-2-ccccccc", 0, "pr-2"),
    ]
    # back on production's own revision: the untagged target takes the tag, no new target
    assert summary(with_tag_on(service, "pr-1", "hello-00001-abc"))[0] == (
        "REVISION",
        "hello-00001-abc",
        100,
        "pr-1",
    )


def test_tag_uri_and_revision_come_from_the_status() -> None:
    service = serving([run_v2.TrafficTarget(type_=LATEST, percent=100)])
    service.traffic_statuses = [
        run_v2.TrafficTargetStatus(
            type_=LATEST, percent=100, tag="live", uri="https://live---hello-x.a.run.app"
        ),
        run_v2.TrafficTargetStatus(
            type_=REVISION, revision="hello-pr-1-0123456", tag="pr-1", uri="https://pr-1---hello-x.a.run.app"
        ),
    ]
    assert tag_uri(service, "pr-1") == "https://pr-1---hello-x.a.run.app"
    assert tag_uri(service, "pr-2") is None
    assert tag_revision(service, "pr-1") == "hello-pr-1-0123456"
    assert tag_revision(service, "live") == "hello-00001-abc"
    assert tag_revision(service, "pr-2") is None
    assert tags(service) == {"live", "pr-1"}
