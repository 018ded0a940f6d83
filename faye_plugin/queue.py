"""The queue's rules, as pure functions: who supersedes whom, and where a run may be stopped (the safe point).

Nothing here does I/O. The operators in ``faye_plugin.operators.queue`` feed it what the Airflow REST
API and Cloud Run report, so the rules are checked once, without a stack (tests/unit/test_queue.py).
Which slot a preview gets is :mod:`faye_plugin.slots`; the rows of ``faye queue`` are
:mod:`faye_plugin.cli.queue`'s. docs/queue.md explains the design.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

DEPLOY_DAG = "faye_deploy"
CLEANUP_DAG = "faye_cleanup"
TEARDOWN_DAG = "faye_teardown"
ROLLBACK_DAG = "faye_rollback"
STOP_DEPLOYS_TASK_ID = "stop_deploys"
QUEUE_DAGS = ("faye_deploy", "faye_build", "faye_test")
SUPERSEDE_TASK_ID = "supersede_older_runs"
SAFE_POINT_TASK_ID = "still_newest"
# The writes of a deploy, in order. Once the safe-point check has passed, a run is never cancelled by
# a newer one until the last of these has finished: newer runs wait for it instead.
CRITICAL_TASK_IDS = ("release_slot", "deploy_revision", "update_proxy")
TEST_SERVERS_POOL = "faye_test_servers"
ACTIVE_RUN_STATES = ("queued", "running")
# Task instance states that mean "has started or finished" (anything else has not started yet).
STARTED_STATES = frozenset(
    {"running", "success", "failed", "deferred", "up_for_retry", "up_for_reschedule", "restarting"}
)
DONE_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
SUPERSEDED_PREFIX = "superseded"


@dataclass(frozen=True)
class RunInfo:
    """One DAG run as the REST API reports it (only what the queue needs)."""

    dag_id: str
    run_id: str
    state: str
    run_after: datetime
    conf: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None
    logical_date: datetime | None = None
    queued_at: datetime | None = None
    start_date: datetime | None = None
    run_type: str = "manual"

    @property
    def service(self) -> str | None:
        value = self.conf.get("service")
        return str(value) if value is not None else None

    @property
    def pr(self) -> int | None:
        value = self.conf.get("pr")
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    @property
    def git_sha(self) -> str | None:
        value = self.conf.get("git_sha")
        return str(value) if value is not None else None

    @property
    def slot(self) -> str | None:
        value = self.conf.get("slot")
        return str(value) if value else None

    @property
    def priority(self) -> int:
        return conf_priority(self.conf)

    @property
    def preview_key(self) -> tuple[str, int] | None:
        """(service, pr), or None for a run that is not about one preview (e.g. a cleanup)."""
        if self.service is None or self.pr is None:
            return None
        return (self.service, self.pr)

    @property
    def order_key(self) -> tuple[datetime, str]:
        """Trigger order: ``run_after`` (the trigger time of a manual run), then the run id."""
        return (self.run_after, self.run_id)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_RUN_STATES


@dataclass(frozen=True)
class TaskState:
    """One task instance as the REST API reports it."""

    task_id: str
    state: str | None
    pool: str | None = None
    try_number: int = 0
    map_index: int = -1
    start_date: datetime | None = None
    end_date: datetime | None = None


def conf_priority(conf: Mapping[str, Any]) -> int:
    """The request's priority (0..100, default 0); anything unreadable counts as 0."""
    try:
        value = int(conf.get("priority") or 0)
    except (TypeError, ValueError):
        return 0
    return max(0, min(100, value))


def _states(tis: Iterable[TaskState]) -> dict[str, str | None]:
    return {ti.task_id: ti.state for ti in tis}


def past_safe_point(tis: Iterable[TaskState]) -> bool:
    """True once a run has started its safe-point check (or any write): it must not be cancelled now.

    A run whose ``still_newest`` check is running may be a heartbeat away from its first write, so it
    counts as past the point; it stops itself when it sees the newer run.
    """
    states = _states(tis)
    if states.get(SAFE_POINT_TASK_ID) in {"running", "success"}:
        return True
    return any(states.get(t) in STARTED_STATES for t in CRITICAL_TASK_IDS)


def in_critical_section(tis: Iterable[TaskState]) -> bool:
    """True while a run is between its safe point and the end of its last write (``update_proxy``)."""
    tis = list(tis)
    if not past_safe_point(tis):
        return False
    last = _states(tis).get(CRITICAL_TASK_IDS[-1])
    return last not in DONE_STATES


@dataclass(frozen=True)
class SupersedePlan:
    """What ``supersede_older_runs`` does for run ``me``."""

    cancel: tuple[RunInfo, ...] = ()  # older runs of the same preview, stopped now (before their safe point)
    wait_for: tuple[RunInfo, ...] = ()  # older runs past their safe point: they finish their writes first
    superseded_by: RunInfo | None = None  # a newer run of the same preview exists: ``me`` steps aside


def same_preview(a: RunInfo, b: RunInfo) -> bool:
    """Two deploy runs of the same (service, pr); cleanup runs and other DAGs never match."""
    return (
        a.dag_id == b.dag_id == DEPLOY_DAG
        and a.preview_key is not None
        and a.preview_key == b.preview_key
        and a.run_id != b.run_id
    )


def plan_supersede(
    me: RunInfo, runs: Iterable[RunInfo], tis_by_run: Mapping[str, Sequence[TaskState]]
) -> SupersedePlan:
    """Decide which active runs of ``me``'s preview are cancelled, waited for, or supersede ``me``."""
    cancel: list[RunInfo] = []
    wait_for: list[RunInfo] = []
    newest: RunInfo | None = None
    for run in sorted(runs, key=lambda r: r.order_key):
        if not run.active or not same_preview(me, run):
            continue
        if run.order_key > me.order_key:
            newest = run
        elif past_safe_point(tis_by_run.get(run.run_id, ())):
            wait_for.append(run)
        else:
            cancel.append(run)
    return SupersedePlan(cancel=tuple(cancel), wait_for=tuple(wait_for), superseded_by=newest)


def deploy_of_same_preview(me: RunInfo, run: RunInfo) -> bool:
    """``run`` is a deploy of the (service, pr) that ``me`` (a teardown or rollback run) acts on."""
    return (
        run.dag_id == DEPLOY_DAG
        and me.preview_key is not None
        and run.preview_key == me.preview_key
        and run.run_id != me.run_id
    )


def plan_stop_deploys(
    me: RunInfo, runs: Iterable[RunInfo], tis_by_run: Mapping[str, Sequence[TaskState]]
) -> SupersedePlan:
    """What a teardown or rollback run ``me`` does with the active deploys of its PR.

    It is the PR's newest request, so it supersedes older deploys: one inside its writes (between its
    safe point and the end of ``update_proxy``) is waited for, never cut between revision and route;
    any other older one is stopped now (before its safe point, or testing a preview about to change).
    A deploy triggered after ``me`` is newer: ``me`` steps aside (``superseded_by``).
    """
    cancel: list[RunInfo] = []
    wait_for: list[RunInfo] = []
    newest: RunInfo | None = None
    for run in sorted(runs, key=lambda r: r.order_key):
        if not run.active or not deploy_of_same_preview(me, run):
            continue
        if run.order_key > me.order_key:
            newest = run
        elif in_critical_section(tis_by_run.get(run.run_id, ())):
            wait_for.append(run)
        else:
            cancel.append(run)
    return SupersedePlan(cancel=tuple(cancel), wait_for=tuple(wait_for), superseded_by=newest)


@dataclass(frozen=True)
class TagRequest:
    """The newest request recorded on Cloud Run for one preview tag (its preview state's ``requested_ms``)."""

    run_id: str
    requested_at: float  # epoch seconds of that run's trigger time
    git_sha: str | None = None
    slot: str | None = None  # the slot that run claimed at its safe point
    claimed_at: float | None = None  # epoch seconds of the claim


@dataclass(frozen=True)
class SafePointDecision:
    action: str  # "proceed" | "wait" | "superseded"
    reason: str
    other_run_id: str | None = None


def safe_point_decision(
    me: RunInfo,
    runs: Iterable[RunInfo],
    tis_by_run: Mapping[str, Sequence[TaskState]],
    recorded: TagRequest | None = None,
) -> SafePointDecision:
    """The ``still_newest`` check, right before a deploy's first write.

    - a newer active run of the same preview exists → this run is superseded by it;
    - Cloud Run records a newer request for the tag than this run's trigger time → superseded
      (an older sha never overwrites a newer one that already finished);
    - an older run of the same preview is inside its writes → wait for it;
    - otherwise proceed.
    """
    runs = list(runs)
    plan = plan_supersede(me, runs, tis_by_run)
    if plan.superseded_by is not None:
        newer = plan.superseded_by
        return SafePointDecision(
            "superseded",
            f"{SUPERSEDED_PREFIX} by {newer.run_id} (sha {newer.git_sha}), a newer deploy of the same PR",
            newer.run_id,
        )
    if (
        recorded is not None
        and recorded.run_id != me.run_id
        and round(recorded.requested_at * 1000) > round(me.run_after.timestamp() * 1000)
    ):
        return SafePointDecision(
            "superseded",
            f"{SUPERSEDED_PREFIX} by {recorded.run_id} (sha {recorded.git_sha}), a newer deploy of the "
            "same PR that already wrote this preview",
            recorded.run_id,
        )
    for run in plan.wait_for:
        if in_critical_section(tis_by_run.get(run.run_id, ())):
            return SafePointDecision(
                "wait",
                f"waiting for {run.run_id}, an older deploy of PR {me.pr} inside its writes",
                run.run_id,
            )
    return SafePointDecision("proceed", "this run is the newest deploy of its PR")


def superseded_note(by_run_id: str, reason: str = "") -> str:
    """The run note of a superseded run (``faye queue`` and the tests look for the prefix)."""
    note = f"{SUPERSEDED_PREFIX} by {by_run_id}"
    if reason:
        note += f": {reason}"
    return note[:1000]


def is_superseded(run: RunInfo) -> bool:
    return bool(run.note and run.note.startswith(SUPERSEDED_PREFIX))
