"""The queue's rules, as pure functions: who supersedes whom, where a run may be stopped, which slot a
preview gets, and what a waiting run waits for.

Nothing here does I/O. The operators in ``faye_plugin.operators.queue`` feed it what the Airflow REST
API and Cloud Run report, and ``faye queue`` / the tests use the same functions, so the rules are
checked once, without a stack (tests/unit/test_queue.py). docs/queue.md explains the design.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from faye_plugin.exceptions import SlotBusyError

DEPLOY_DAG = "faye_deploy"
CLEANUP_DAG = "faye_cleanup"
QUEUE_DAGS = ("faye_deploy", "faye_build", "faye_test")
SUPERSEDE_TASK_ID = "supersede_older_runs"
SAFE_POINT_TASK_ID = "still_newest"
# The writes of a deploy, in order. Once the safe-point check has passed, a run is never cancelled by
# a newer one until the last of these has finished: newer runs wait for it instead.
CRITICAL_TASK_IDS = ("release_slot", "deploy_revision", "update_proxy")
WRITES_POOL = "faye_preview_writes"
TEST_SERVERS_POOL = "faye_test_servers"
ACTIVE_RUN_STATES = ("queued", "running")
# Task instance states that mean "has started or finished" (anything else has not started yet).
STARTED_STATES = frozenset(
    {"running", "success", "failed", "deferred", "up_for_retry", "up_for_reschedule", "restarting"}
)
DONE_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
# A slot claim whose deploy has not finished after this long is treated as abandoned (its run died).
CLAIM_GRACE_SECONDS = 30 * 60
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


@dataclass(frozen=True)
class TagRequest:
    """The newest request recorded on Cloud Run for one preview tag (annotation ``faye.dev/requests``)."""

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
        and recorded.requested_at > me.run_after.timestamp()
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


# ---------------------------------------------------------------------------------------------- slots


@dataclass(frozen=True)
class Holder:
    """The preview that holds a slot (from the Cloud Run annotation's slot claims)."""

    pr: int
    sha: str | None = None
    deployed_at: float | None = None  # epoch s of its last finished deploy; None: deploy still in flight
    pinned: bool = False
    claimed_at: float | None = None  # epoch s of the claim (set when the slot was taken)

    def describe(self) -> str:
        sha = (self.sha or "?")[:7]
        extra = ", pinned" if self.pinned else ""
        if self.deployed_at is None:
            extra += ", deploying"
        return f"PR {self.pr} (sha {sha}{extra})"


@dataclass(frozen=True)
class SlotDecision:
    """The slot a deploy takes; ``evict`` is the preview it displaces (its route and tag are removed)."""

    slot: str | None  # None: no slot now and the policy is ``wait``
    evict: Holder | None = None
    reason: str = ""

    @property
    def waits(self) -> bool:
        return self.slot is None


def _last_used(holder: Holder) -> float:
    return holder.deployed_at if holder.deployed_at is not None else (holder.claimed_at or 0.0)


def _evictable(holder: Holder, now: float) -> bool:
    if holder.pinned:
        return False
    if holder.deployed_at is None:
        # A claim whose run is still writing is not taken away, unless it was abandoned long ago.
        return holder.claimed_at is not None and now - holder.claimed_at > CLAIM_GRACE_SECONDS
    return True


def describe_holders(holders: Mapping[str, Holder]) -> str:
    return ", ".join(f"{slot}: {h.describe()}" for slot, h in sorted(holders.items())) or "none"


def choose_slot(
    *,
    service: str,
    pr: int,
    requested_slot: str | None,
    service_slots: Sequence[str],
    holders: Mapping[str, Holder],
    policy: str,
    now: float,
) -> SlotDecision:
    """Pick the slot for a deploy of ``pr``.

    ``requested_slot`` given: that slot (evicting its holder if another PR holds it, unless pinned or
    mid-deploy). Otherwise the slot the PR already holds, else a free one (in catalogue order), else by
    ``policy``: ``evict-oldest`` takes the slot of the least recently deployed preview that is neither
    pinned nor mid-deploy (and waits when there is none); ``wait`` returns ``SlotDecision(None)``;
    ``fail`` raises SlotBusyError naming every slot and its holder.
    """
    if policy not in ("evict-oldest", "wait", "fail"):
        raise ValueError(f"unknown slot policy {policy!r}")
    known = {slot: h for slot, h in holders.items() if slot in service_slots}
    if requested_slot is not None:
        if requested_slot not in service_slots:
            raise ValueError(
                f"unknown slot {requested_slot!r} for {service}: its slots are {', '.join(service_slots)}"
            )
        holder = known.get(requested_slot)
        if holder is None or holder.pr == pr:
            return SlotDecision(requested_slot, None, "the slot asked for")
        if _evictable(holder, now):
            return SlotDecision(requested_slot, holder, f"the slot asked for, taken from {holder.describe()}")
        return _busy(service, pr, policy, {requested_slot: holder}, f"slot {requested_slot} is held")
    for slot in service_slots:
        holder = known.get(slot)
        if holder is not None and holder.pr == pr:
            return SlotDecision(slot, None, "the slot this PR already holds")
    for slot in service_slots:
        if slot not in known:
            return SlotDecision(slot, None, "a free slot")
    if policy == "evict-oldest":
        candidates = [(slot, h) for slot, h in known.items() if _evictable(h, now)]
        if candidates:
            slot, holder = min(candidates, key=lambda item: (_last_used(item[1]), item[0]))
            return SlotDecision(
                slot, holder, f"evicting the least recently deployed preview, {holder.describe()}"
            )
        # Nothing may be evicted right now (pinned or mid-deploy): wait for a slot.
        return SlotDecision(
            None, None, f"every slot of {service} is pinned or deploying: {describe_holders(known)}"
        )
    return _busy(service, pr, policy, known, f"no free slot for {service}")


def _busy(service: str, pr: int, policy: str, holders: Mapping[str, Holder], what: str) -> SlotDecision:
    message = f"{what} (PR {pr} asked; slot policy {policy}): {describe_holders(holders)}"
    if policy == "fail":
        raise SlotBusyError(message)
    return SlotDecision(None, None, message)


def claim_holders(
    *,
    pr: int,
    records: Iterable[Any],
    requests: Mapping[str, TagRequest],
    routes: Iterable[Any] = (),
    service: str,
    now: float,
    writing_runs: Iterable[str] | None = None,
) -> dict[str, Holder]:
    """Who holds each slot of ``service``, seen from PR ``pr`` at its safe point.

    ``records`` are the ``faye.dev/previews`` records (``tag, pr, sha, slot, revision, deployed_at,
    pinned``), ``requests`` the ``faye.dev/requests`` entries (which run claimed which slot when),
    ``routes`` the proxy's slot routes. A holder is *mid-deploy* (``deployed_at=None``: never evicted)
    while the run that claimed its slot is still writing (``writing_runs``: active runs between their
    safe point and the end of ``update_proxy``). Without that list, a claim newer than the preview's
    last deploy counts as mid-deploy for CLAIM_GRACE_SECONDS. A route whose PR has no record still holds
    its slot. ``pr``'s own holdings are left out.
    """
    writing = None if writing_runs is None else set(writing_runs)
    holders: dict[str, Holder] = {}
    by_pr: dict[int, Any] = {}
    for record in records:
        by_pr[int(record.pr)] = record
        if not record.slot or int(record.pr) == pr:
            continue
        claim = requests.get(record.tag)
        claimed_at = claim.claimed_at if claim is not None and claim.slot == record.slot else None
        deployed: float | None = float(record.deployed_at) if record.revision else 0.0
        if writing is not None:
            if claim is not None and claim.run_id in writing:
                deployed = None
        elif claimed_at is not None and claimed_at > float(record.deployed_at or 0):
            deployed = None if now - claimed_at <= CLAIM_GRACE_SECONDS else claimed_at
        holders[record.slot] = Holder(
            pr=int(record.pr),
            sha=record.sha or None,
            deployed_at=deployed,
            pinned=bool(record.pinned),
            claimed_at=claimed_at,
        )
    for route in routes:
        if route.service != service or int(route.pr) == pr or route.slot in holders:
            continue
        record = by_pr.get(int(route.pr))
        holders[route.slot] = Holder(
            pr=int(route.pr),
            sha=route.sha or None,
            deployed_at=float(record.deployed_at) if record is not None else 0.0,
            pinned=bool(record.pinned) if record is not None else False,
        )
    return holders


def claim_decision(
    *,
    service: str,
    pr: int,
    slot: str,
    explicit: bool,
    holders: Mapping[str, Holder],
    policy: str,
    now: float,
) -> SlotDecision:
    """May PR ``pr`` claim ``slot`` (chosen when its run started) now, at its safe point?

    Free, or already this PR's: yes. Held by another preview: a slot the request named (``explicit``)
    or the ``evict-oldest`` policy evicts the holder unless it is pinned or mid-deploy (then: wait);
    the ``wait`` policy waits; ``fail`` raises SlotBusyError naming every slot and its holder.
    """
    holder = holders.get(slot)
    if holder is None or holder.pr == pr:
        return SlotDecision(slot, None, "the slot is free" if holder is None else "the slot this PR holds")
    if explicit or policy == "evict-oldest":
        if _evictable(holder, now):
            return SlotDecision(slot, holder, f"taking slot {slot} from {holder.describe()}")
        if policy != "fail":
            return SlotDecision(None, None, f"slot {slot} is held by {holder.describe()}")
    return _busy(service, pr, policy, holders, f"slot {slot} was taken by {holder.describe()}")


# ---------------------------------------------------------------------------------------------- queue


@dataclass(frozen=True)
class QueueRow:
    """One line of ``faye queue``."""

    dag_id: str
    run_id: str
    state: str
    service: str | None
    pr: int | None
    sha: str | None
    slot: str | None
    priority: int
    step: str
    waiting_for: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "state": self.state,
            "service": self.service,
            "pr": self.pr,
            "sha": self.sha,
            "slot": self.slot,
            "priority": self.priority,
            "step": self.step,
            "waiting_for": self.waiting_for,
        }


def current_step(tis: Sequence[TaskState]) -> TaskState | None:
    """The task a run is at: a running one, else one waiting (deferred, rescheduled, queued, scheduled)."""
    rank = {
        "running": 0,
        "deferred": 1,
        "up_for_reschedule": 2,
        "up_for_retry": 3,
        "queued": 4,
        "scheduled": 5,
    }
    started = [ti for ti in tis if ti.state in rank]
    if not started:
        return None
    return min(
        started, key=lambda ti: (rank[str(ti.state)], ti.start_date or datetime.max.replace(tzinfo=None))
    )


def waiting_for(
    run: RunInfo,
    tis: Sequence[TaskState],
    others: Iterable[RunInfo],
    others_tis: Mapping[str, Sequence[TaskState]],
    pools: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """What a run waits for, in words; "" when it is simply running a step."""
    pools = pools or {}
    if run.state == "queued":
        return "its turn to start (the DAG's active-run limit)"
    states = _states(tis)
    step = current_step(tis)
    if states.get(SAFE_POINT_TASK_ID) in {"up_for_reschedule", "deferred"} or (
        step is not None and step.task_id == SAFE_POINT_TASK_ID and step.state in {"scheduled", "queued"}
    ):
        # still_newest writes why it waits into the run note ("waiting for a slot: ...").
        if run.note and run.note.startswith("waiting for "):
            return run.note.removeprefix("waiting for ")
        for other in others:
            if (
                other.active
                and same_preview(run, other)
                and other.order_key < run.order_key
                and in_critical_section(others_tis.get(other.run_id, ()))
            ):
                return f"a running deploy of PR {run.pr} ({other.run_id})"
    if any(
        ti.pool == TEST_SERVERS_POOL and ti.state in {"scheduled", "queued", "deferred", "up_for_reschedule"}
        for ti in tis
    ):
        return "a test server"
    if step is None:
        return ""
    if step.task_id.endswith("release_slot") and step.state in {
        "up_for_reschedule",
        "deferred",
        "up_for_retry",
    }:
        return "a slot"
    if step.pool == TEST_SERVERS_POOL and step.state in {
        "scheduled",
        "queued",
        "deferred",
        "up_for_reschedule",
    }:
        return "a test server"
    if step.pool and step.state in {"scheduled", "queued"}:
        pool = pools.get(step.pool, {})
        if step.pool == WRITES_POOL:
            return "the preview write lock (another run is writing)"
        if pool and pool.get("open_slots", 1) <= 0:
            return f"a slot in pool {step.pool}"
    if step.state in {"scheduled", "queued"}:
        return "a worker"
    return ""


def queue_rows(
    runs: Sequence[RunInfo],
    tis_by_run: Mapping[str, Sequence[TaskState]],
    pools: Mapping[str, Mapping[str, int]] | None = None,
) -> list[QueueRow]:
    """The rows of ``faye queue``: active runs, highest priority first, then in trigger order."""
    rows = []
    for run in sorted((r for r in runs if r.active), key=lambda r: (-r.priority, r.order_key)):
        tis = list(tis_by_run.get(run.run_id, ()))
        step = current_step(tis)
        rows.append(
            QueueRow(
                dag_id=run.dag_id,
                run_id=run.run_id,
                state=run.state,
                service=run.service,
                pr=run.pr,
                sha=run.git_sha,
                slot=run.slot,
                priority=run.priority,
                step=f"{step.task_id} ({step.state})"
                if step
                else ("-" if run.state == "queued" else "between steps"),
                waiting_for=waiting_for(run, tis, runs, tis_by_run, pools),
            )
        )
    return rows
