"""The one owner of a service's preview state: who holds which slot until when, and which deploy is live.

The state lives on the Cloud Run service itself, in the annotation ``faye.dev/previews`` (service
metadata: patching it creates no revision). :class:`PreviewState` is its typed, frozen form, and every
change is a pure *transition* on it that returns a new state:

- :meth:`PreviewState.extend` pushes out a preview's expiry (never pulls it in);
- :meth:`PreviewState.request` records the newest deploy request of a PR (the safe point reads it);
- :meth:`PreviewState.claim` claims a slot for a deploy (refused when another live claim holds it);
- :meth:`PreviewState.release` completes a claim that takes a slot over, dropping the holder it evicts;
- :meth:`PreviewState.record_deploy` records the revision a deploy put under the tag;
- :meth:`PreviewState.undo_deploy` undoes a deploy whose revision never became ready;
- :meth:`PreviewState.remove` tears a preview down (its record goes with its tag);
- :meth:`PreviewState.forget_lost` drops the records whose tag Cloud Run deleted on its own (at its
  tag limit), unless a deploy in flight holds them;
- :meth:`PreviewState.pin` pins or unpins;
- :meth:`PreviewState.roll_back` points the record at an earlier revision of the PR (its tag moves in
  the same write);
- :meth:`PreviewState.expire` brings an expiry forward to now (the one transition that shortens one:
  ``faye expire``; extend never does).

:func:`apply` runs one transition through one etag-guarded read-modify-write of the service
(``CloudRunPreviewHook.modify_service``): read, decode, transition, encode, write; on a lost race the
whole cycle runs again on the fresh read. Nothing else in faye parses or writes the annotation.

Invariants (tests/unit/test_preview_state.py checks them over random interleavings, with a
conflicting writer between read and write):

1. At most one claim per slot: no two previews hold the same slot, and at most one live deploy is
   taking a slot over.
2. Every claim names a tag Cloud Run serves, or a deploy in flight (``run_id`` and ``claimed_at`` set).
   Cloud Run can break this on its own: past 2,000 tags in a project and region it deletes the writing
   service's oldest tags that carry no traffic percentage (every preview tag). ``faye_cleanup`` restores
   it with :meth:`PreviewState.forget_lost`, which never touches a live claim.
3. A routed slot is claimed by the tag it routes to (routes are written after the deploy is recorded
   and removed before a claim is handed over).
4. A deploy never shortens an expiry.

Claims and liveness. A deploy claims its slot at its safe point (``still_newest``) and keeps the
claim *live* while its run is active: a live claim is never evicted, and a claim on a slot held by a
live claim is refused, so two PRs can never both take one slot, and recording a deploy never drops
another tag's claim (it refuses instead). A claim stops being live when its run is known to have
ended (absent from Airflow's active runs listed *after* the claim was made) or after
CLAIM_GRACE_SECONDS. A claim on a slot held by a preview that is not live (its deploy finished)
takes the slot over: ``taking`` is set, the holder keeps the slot until ``release_slot`` has removed
its route and then, in one write, its tag and record (:meth:`release`).

Encoding (version 2, compact so that 2,000 previews stay well under Kubernetes' 256 KiB annotation
limit, which Cloud Run v2 applies): ``{"v": 2, "t": base, "p": {"<pr>": [sha, revision, slot,
expires, deployed_at, pinned, requested_ms, run_id, claimed_ms, taking, first]}}`` with trailing defaults
left out, times written relative to ``base`` (0 still meaning "never"), a full sha as ``~`` and the
base64 of its 20 bytes, and the revision as ``=`` (or ``=<suffix>``) when it is the default
``<service>-pr-<N>-<sha7>``. ``first``, the
time of the preview's first deploy (its lifetime counts from it), is written as its distance from
``deployed_at`` plus one, and as 0 (left out) while the last deploy is the first: a preview deployed
once costs nothing more. The
version-1 format (a JSON object per tag in ``faye.dev/previews`` plus ``faye.dev/requests``) is still
read; every write is version 2 and drops ``faye.dev/requests``. The local stack starts fresh, so no
migration is needed beyond that.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from faye_plugin.exceptions import PreviewStateError, SlotTakenError
from faye_plugin.naming import pr_of, tag_of

if TYPE_CHECKING:
    from google.cloud import run_v2

    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, ServiceChange

PREVIEWS_ANNOTATION = "faye.dev/previews"
LEGACY_REQUESTS_ANNOTATION = "faye.dev/requests"
VERSION = 2
# A claim whose run has not been seen to end is still treated as abandoned after this long.
CLAIM_GRACE_SECONDS = 30 * 60


# The annotation is the source of truth for expiry: one that cannot be read is an error, not a guess.
StateError = PreviewStateError


@dataclass(frozen=True)
class Preview:
    """One preview as recorded on its service.

    ``expires`` and ``deployed_at`` are epoch seconds; ``requested_ms`` and ``claimed_ms`` epoch
    milliseconds. ``slot`` is ``""`` when the preview holds none, ``revision`` ``""`` when no deploy of
    it was recorded. ``run_id``/``claimed_ms`` name the deploy that claimed the slot (kept while that
    run may still be writing); ``taking`` is the slot that deploy is taking over from its holder.
    """

    pr: int
    expires: int
    sha: str = ""
    revision: str = ""
    slot: str = ""
    pinned: bool = False
    deployed_at: int = 0
    requested_ms: int = 0
    run_id: str = ""
    claimed_ms: int = 0
    taking: str = ""
    first_deployed_at: int = 0  # epoch s of the first deploy when it was not the last; 0: deployed_at

    @property
    def tag(self) -> str:
        return tag_of(self.pr)

    @property
    def born(self) -> int:
        """Epoch seconds of the preview's first deploy (0: never deployed)."""
        return self.first_deployed_at or self.deployed_at

    def is_expired(self, now: float, max_lifetime_hours: int | None = None) -> bool:
        """True when the preview is not pinned and its expiry has passed, or (given
        ``max_lifetime_hours``) its first deploy is that many hours ago, however often it was redeployed."""
        if self.pinned:
            return False
        if self.expires <= int(now):
            return True
        return (
            bool(max_lifetime_hours)
            and bool(self.born)
            and self.born + int(max_lifetime_hours or 0) * 3600 <= int(now)
        )


@dataclass(frozen=True)
class Liveness:
    """What decides whether a claim is live: the time, and (when known) Airflow's active runs.

    ``active_runs`` were listed at ``listed_ms``; a claim made before that whose run is not among them
    belongs to a run that has ended. Without the list, a claim is live for CLAIM_GRACE_SECONDS.
    """

    now_ms: int
    active_runs: frozenset[str] | None = None
    listed_ms: int = 0

    def live(self, preview: Preview) -> bool:
        if not preview.run_id or not preview.claimed_ms:
            return False
        if self.now_ms - preview.claimed_ms > CLAIM_GRACE_SECONDS * 1000:
            return False
        if self.active_runs is None:
            return True
        return preview.run_id in self.active_runs or preview.claimed_ms >= self.listed_ms


def ms(seconds: float) -> int:
    """Epoch seconds as the state's epoch milliseconds."""
    return round(seconds * 1000)


def _offset(value: int, base: int) -> int:
    """A time as written: 0 stays 0 (never), others relative to the state's base (short numbers)."""
    return value - base + 1 if value else 0


def _value(written: Any, base: int) -> int:
    return int(written) + base - 1 if int(written) else 0


def _first(written: Any, deployed_at: int) -> int:
    """The first-deploy time as written: its distance from ``deployed_at`` plus one, 0 for none."""
    return deployed_at - int(written) + 1 if int(written) and deployed_at else 0


def _pack_sha(sha: str) -> str:
    """A full sha in 28 characters (``~`` + base64 of its 20 bytes) instead of 40; others as they are."""
    if len(sha) == 40 and all(c in "0123456789abcdef" for c in sha):
        return "~" + base64.urlsafe_b64encode(bytes.fromhex(sha)).decode().rstrip("=")
    return sha


def _unpack_sha(written: str) -> str:
    if written.startswith("~"):
        return base64.urlsafe_b64decode(written[1:] + "=").hex()
    return written


@dataclass(frozen=True)
class PreviewState:
    """Every preview of one service, by PR number. Transitions return a new state."""

    previews: Mapping[int, Preview] = field(default_factory=dict)

    # --- reading --------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Preview]:
        return iter(self.previews[pr] for pr in sorted(self.previews))

    def __len__(self) -> int:
        return len(self.previews)

    def get(self, pr: int) -> Preview | None:
        return self.previews.get(int(pr))

    def by_tag(self, tag: str) -> Preview | None:
        pr = pr_of(tag)
        return None if pr is None else self.previews.get(pr)

    def holder(self, slot: str, *, besides: int | None = None) -> Preview | None:
        """The preview that holds ``slot`` (other than PR ``besides``), or None."""
        return next((p for p in self if p.slot == slot and p.pr != besides), None)

    def taker(self, slot: str, liveness: Liveness, *, besides: int | None = None) -> Preview | None:
        """The live deploy taking ``slot`` over (other than PR ``besides``), or None."""
        return next(
            (p for p in self if p.taking == slot and p.pr != besides and liveness.live(p)),
            None,
        )

    def newer_request(self, pr: int, requested_ms: int) -> Preview | None:
        """The PR's record if it holds a request newer than ``requested_ms`` (the safe point's check)."""
        record = self.get(pr)
        return record if record is not None and record.requested_ms > requested_ms else None

    def _with(self, preview: Preview) -> PreviewState:
        return PreviewState({**self.previews, preview.pr: preview})

    def _without(self, pr: int) -> PreviewState:
        return PreviewState({k: v for k, v in self.previews.items() if k != pr})

    # --- transitions ----------------------------------------------------------------------------

    def extend(self, pr: int, expires: int) -> PreviewState:
        """Push the PR's expiry out to ``expires`` (never in); a PR with no record gets one."""
        old = self.get(pr)
        if old is None:
            return self._with(Preview(pr=int(pr), expires=int(expires)))
        return self._with(replace(old, expires=max(old.expires, int(expires))))

    def request(self, pr: int, *, requested_ms: int, expires: int) -> PreviewState:
        """Record the PR's newest deploy request (its run's trigger time), without claiming a slot."""
        old = self.get(pr) or Preview(pr=int(pr), expires=int(expires))
        return self._with(replace(old, requested_ms=max(old.requested_ms, requested_ms)))

    def claim(
        self,
        pr: int,
        slot: str,
        *,
        run_id: str,
        requested_ms: int,
        liveness: Liveness,
        expires: int,
        evicts: int | None = None,
    ) -> PreviewState:
        """Claim ``slot`` for the deploy ``run_id`` of PR ``pr``.

        A free slot, or the PR's own, is claimed at once. A slot held by another preview is taken over
        only when that preview is not live and is the one the caller decided to evict (``evicts``):
        the claim then records ``taking`` and :meth:`release` completes it. Refused (SlotTakenError,
        naming the slot and its holder) when another live claim holds or takes the slot, or when the
        holder is not the one the caller meant to evict. Claims of ended runs are forgotten on the way
        (their run id only matters while the run may still write).
        """
        taker = self.taker(slot, liveness, besides=pr)
        if taker is not None:
            raise SlotTakenError(f"slot {slot} is being taken by PR {taker.pr} ({taker.run_id})")
        holder = self.holder(slot, besides=pr)
        if holder is not None:
            if liveness.live(holder):
                raise SlotTakenError(
                    f"slot {slot} is held by PR {holder.pr}, whose deploy {holder.run_id} is in flight"
                )
            if holder.pinned or evicts != holder.pr:
                raise SlotTakenError(
                    f"slot {slot} is held by PR {holder.pr}"
                    + (" (pinned)" if holder.pinned else f", not by PR {evicts}")
                )
        state = self._forget_ended_runs(liveness)
        old = state.get(pr) or Preview(pr=int(pr), expires=int(expires))
        # A slot taken from a holder (a record's, or a route's without one) is handed over by release().
        take_now = holder is None and evicts is None and old.slot in ("", slot)
        return state._with(
            replace(
                old,
                slot=slot if take_now else old.slot,
                taking="" if take_now else slot,
                run_id=run_id,
                claimed_ms=liveness.now_ms,
                requested_ms=max(old.requested_ms, requested_ms),
            )
        )

    def _forget_ended_runs(self, liveness: Liveness) -> PreviewState:
        if liveness.active_runs is None:
            return self
        ended = {
            p.pr: replace(p, run_id="", claimed_ms=0, taking="")
            for p in self
            if p.run_id and not liveness.live(p)
        }
        return self if not ended else PreviewState({**self.previews, **ended})

    def release(self, pr: int) -> tuple[PreviewState, Preview | None]:
        """Complete PR ``pr``'s take-over of the slot it is ``taking``: drop the holder, move the claim.

        Returns the new state and the evicted holder (its tag goes in the same write), or None when
        the slot was free by now. Raises SlotTakenError when the PR is taking nothing (its claim was
        lost) or the holder is pinned.
        """
        me = self.get(pr)
        if me is None or not me.taking:
            raise SlotTakenError(f"PR {pr} is taking no slot over (its claim was lost)")
        slot = me.taking
        holder = self.holder(slot, besides=pr)
        if holder is not None and holder.pinned:
            raise SlotTakenError(f"slot {slot} is held by PR {holder.pr}, pinned since the claim")
        state = self if holder is None else self._without(holder.pr)
        return state._with(replace(me, slot=slot, taking="")), holder

    def record_deploy(
        self, pr: int, *, sha: str, slot: str, revision: str, expires: int, now: float, run_id: str = ""
    ) -> PreviewState:
        """Record that ``revision`` (``sha``) now serves the PR's tag in ``slot``, deployed by ``run_id``.

        Keeps the pin and the later expiry (a deploy never shortens one). The deploying run holds the
        claim, live until the run ends (a deploy without a safe-point claim gets one now, so nobody
        evicts it before its route is written). Refuses, naming the slot and its holder, when another
        tag holds ``slot`` or a live deploy of another PR is taking it: a deploy never drops another's
        claim.
        """
        holder = self.holder(slot, besides=pr)
        if holder is not None:
            raise SlotTakenError(
                f"slot {slot} is held by PR {holder.pr} (sha {holder.sha[:7] or '?'}): "
                f"PR {pr}'s deploy does not take it from under that claim"
            )
        liveness = Liveness(now_ms=ms(now))
        taker = self.taker(slot, liveness, besides=pr)
        if taker is not None:
            raise SlotTakenError(f"slot {slot} is being taken by PR {taker.pr} ({taker.run_id})")
        old = self.get(pr) or Preview(pr=int(pr), expires=int(expires))
        claimed = old.claimed_ms if old.run_id == run_id and old.claimed_ms else liveness.now_ms
        return self._with(
            replace(
                old,
                sha=sha,
                revision=revision,
                slot=slot,
                taking="",
                expires=max(old.expires, int(expires)),
                deployed_at=int(now),
                first_deployed_at=old.born if old.born and old.born < int(now) else 0,
                run_id=run_id or old.run_id,
                claimed_ms=claimed if run_id else old.claimed_ms,
            )
        )

    def undo_deploy(self, pr: int, *, served: str | None, sha: str = "") -> PreviewState:
        """Undo a deploy whose revision never became ready.

        ``served``: the revision Cloud Run still serves the tag from (it keeps the slot), or None (the
        tag goes, and with it the slot claim). The record and its expiry stay.
        """
        old = self.get(pr)
        if old is None:
            return self
        if served:
            return self._with(replace(old, revision=served, sha=sha or old.sha, taking=""))
        return self._with(replace(old, slot="", revision="", taking="", run_id="", claimed_ms=0))

    def remove(self, pr: int) -> PreviewState:
        """Tear the preview down: its record goes (the caller removes its tag in the same write)."""
        return self._without(int(pr))

    def lost(self, served: Collection[str], liveness: Liveness) -> tuple[Preview, ...]:
        """The previews whose tag Cloud Run no longer serves, of deploys no longer in flight.

        A record that holds a slot or names a revision says a deploy put its tag on Cloud Run; when
        ``served`` (the service's tags, spec and status) lacks that tag, Cloud Run removed it without
        faye (past 2,000 tags per project and region it deletes the writing service's oldest tags that
        have no traffic percentage, which every preview tag is). A live claim is never lost: its deploy
        may be about to write the tag (a first deploy claims before it deploys) or to undo it.
        """
        return tuple(
            p for p in self if (p.slot or p.revision) and p.tag not in served and not liveness.live(p)
        )

    def forget_lost(
        self, served: Collection[str], liveness: Liveness, *, among: Collection[int] | None = None
    ) -> tuple[PreviewState, tuple[Preview, ...]]:
        """Drop the records (and with them the slot claims) of the :meth:`lost` previews.

        ``among`` limits it to those PRs (the ones whose routes the caller removed first). Returns the
        new state and the dropped records. The pin goes too: it cannot keep a tag Cloud Run deleted, and
        the PR's next deploy makes a new record. Decided on the state it is applied to, so a preview
        redeployed or claimed again since the caller looked is kept.
        """
        gone = tuple(p for p in self.lost(served, liveness) if among is None or p.pr in among)
        after = self
        for preview in gone:
            after = after._without(preview.pr)
        return after, gone

    def pin(self, pr: int, pinned: bool) -> PreviewState:
        """Pin (kept past its expiry, never evicted) or unpin the preview; KeyError if it has none."""
        old = self.previews[int(pr)]
        return self._with(replace(old, pinned=pinned))

    def roll_back(self, pr: int, *, sha: str, revision: str, requested_ms: int = 0) -> PreviewState:
        """Point the PR's record at ``revision`` (``sha``), an earlier revision its tag now serves.

        The slot, pin, expiry and first-deploy time stay; ``requested_ms`` (the rollback's trigger time)
        is recorded as the PR's newest request, so an older deploy reaching its safe point later steps
        aside instead of overwriting the rollback. Raises PreviewStateError when the PR has no deployed
        preview holding a slot (nothing to roll back).
        """
        old = self.get(pr)
        if old is None or not old.revision or not old.slot:
            raise PreviewStateError(f"PR {pr} has no deployed preview holding a slot: nothing to roll back")
        return self._with(
            replace(old, sha=sha, revision=revision, requested_ms=max(old.requested_ms, requested_ms))
        )

    def expire(self, pr: int, now: float) -> PreviewState:
        """Bring the PR's expiry forward to ``now`` and unpin it (the next ``faye_cleanup`` removes it).

        The one transition that shortens an expiry (``extend`` never does); a later expiry is not
        pushed out. KeyError when the PR has no record.
        """
        old = self.previews[int(pr)]
        return self._with(replace(old, expires=min(old.expires, int(now)), pinned=False))

    # --- encoding -------------------------------------------------------------------------------

    def encode(self, service_name: str = "") -> str:
        """The annotation value (version 2); ``service_name`` shortens default revision names."""
        short = service_name.rsplit("/", 1)[-1]
        base = min((p.deployed_at for p in self if p.deployed_at), default=0)
        body: dict[str, list[Any]] = {}
        for p in self:
            default_revision = f"{short}-{p.tag}-{p.sha[:7]}"
            revision = p.revision
            if short and p.sha and revision.startswith(default_revision):
                revision = "=" + revision[len(default_revision) :]
            row: list[Any] = [
                _pack_sha(p.sha),
                revision,
                p.slot,
                _offset(p.expires, base),
                _offset(p.deployed_at, base),
                int(p.pinned),
                _offset(p.requested_ms, base * 1000),
                p.run_id,
                _offset(p.claimed_ms, base * 1000),
                p.taking,
                p.deployed_at - p.first_deployed_at + 1 if p.first_deployed_at and p.deployed_at else 0,
            ]
            while len(row) > 4 and row[-1] in ("", 0):
                row.pop()
            body[str(p.pr)] = row
        return json.dumps({"v": VERSION, "t": base, "p": body}, separators=(",", ":"))

    @classmethod
    def decode(cls, annotations: Mapping[str, str], service_name: str = "") -> PreviewState:
        """The state in a service's annotations; StateError when the annotation is malformed."""
        raw = annotations.get(PREVIEWS_ANNOTATION, "")
        try:
            data = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            raise StateError(
                f"annotation {PREVIEWS_ANNOTATION} on {service_name} is not JSON: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise StateError(f"annotation {PREVIEWS_ANNOTATION} on {service_name} is not a JSON object")
        if data.get("v") == VERSION:
            return cls._decode_v2(data.get("p") or {}, int(data.get("t") or 0), service_name)
        return cls._decode_v1(data, annotations.get(LEGACY_REQUESTS_ANNOTATION, ""))

    @classmethod
    def _decode_v2(cls, body: Any, base: int, service_name: str) -> PreviewState:
        if not isinstance(body, dict):
            raise StateError(f"annotation {PREVIEWS_ANNOTATION}: 'p' is not an object")
        short = service_name.rsplit("/", 1)[-1]
        previews: dict[int, Preview] = {}
        for key, row in body.items():
            try:
                pr = int(key)
                if not isinstance(row, list) or len(row) < 4:
                    raise ValueError("not a list of at least 4 fields")
                padded = list(row) + ["", "", "", 0, 0, 0, 0, "", 0, "", 0][len(row) :]
                sha, revision, slot = _unpack_sha(str(padded[0])), str(padded[1]), str(padded[2])
                if revision.startswith("="):
                    revision = f"{short}-{tag_of(pr)}-{sha[:7]}{revision[1:]}"
                previews[pr] = Preview(
                    pr=pr,
                    expires=_value(padded[3], base),
                    sha=sha,
                    revision=revision,
                    slot=slot,
                    deployed_at=_value(padded[4], base),
                    pinned=bool(padded[5]),
                    requested_ms=_value(padded[6], base * 1000),
                    run_id=str(padded[7]),
                    claimed_ms=_value(padded[8], base * 1000),
                    taking=str(padded[9]),
                    first_deployed_at=_first(padded[10], _value(padded[4], base)),
                )
            except (TypeError, ValueError, IndexError, binascii.Error) as exc:
                raise StateError(
                    f"annotation {PREVIEWS_ANNOTATION}: entry {key!r} is invalid: {exc!r}"
                ) from exc
        return cls(previews)

    @classmethod
    def _decode_v1(cls, data: dict[str, Any], raw_requests: str) -> PreviewState:
        try:
            requests = json.loads(raw_requests) if raw_requests else {}
        except json.JSONDecodeError:
            requests = {}
        previews: dict[int, Preview] = {}
        for tag, entry in data.items():
            if not isinstance(entry, dict):
                raise StateError(f"annotation {PREVIEWS_ANNOTATION}: entry {tag!r} is not an object")
            try:
                pr = int(entry.get("pr") or tag.removeprefix("pr-"))
                request = requests.get(tag) if isinstance(requests, dict) else None
                request = request if isinstance(request, dict) else {}
                previews[pr] = Preview(
                    pr=pr,
                    expires=int(entry["expires"]),
                    sha=str(entry.get("sha", "")),
                    revision=str(entry.get("revision", "")),
                    slot=str(entry.get("slot") or ""),
                    pinned=bool(entry.get("pinned", False)),
                    deployed_at=int(entry.get("deployed_at", 0)),
                    requested_ms=ms(float(request.get("requested_at") or 0)),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise StateError(
                    f"annotation {PREVIEWS_ANNOTATION}: entry {tag!r} is invalid: {exc!r}"
                ) from exc
        return cls(previews)

    @classmethod
    def read(cls, service: run_v2.Service | None) -> PreviewState:
        """The state recorded on ``service`` (empty when the service does not exist)."""
        if service is None:
            return cls()
        return cls.decode(dict(service.annotations), service.name)

    def write(self, service: run_v2.Service) -> None:
        """Put this state on ``service`` (a field edit of a copy the caller is about to PATCH)."""
        if LEGACY_REQUESTS_ANNOTATION in service.annotations:
            del service.annotations[LEGACY_REQUESTS_ANNOTATION]
        if not self.previews:
            if PREVIEWS_ANNOTATION in service.annotations:
                del service.annotations[PREVIEWS_ANNOTATION]
            return
        service.annotations[PREVIEWS_ANNOTATION] = self.encode(service.name)


# ------------------------------------------------------------------------------------------- applying


@dataclass(frozen=True)
class Planned:
    """What a transition wants written: the new state, and a rewritten service when traffic changes.

    ``service`` None: only the annotation changes (``update_mask=["annotations"]``: no revision).
    An empty ``update_mask`` writes the whole service (a deploy's PATCH, or the create of a service).
    """

    state: PreviewState
    service: run_v2.Service | None = None
    update_mask: tuple[str, ...] = ("annotations",)


#: A transition as :func:`apply` runs it: the state and the service just read (None: no service yet)
#: in, the change to write out (None: write nothing).
Transition = Callable[[PreviewState, "run_v2.Service | None"], Planned | None]


def _change(transition: Transition) -> ServiceChange:
    def change(current: run_v2.Service | None) -> tuple[run_v2.Service, list[str] | None] | None:
        planned = transition(PreviewState.read(current), current)
        if planned is None:
            return None
        if planned.service is not None:
            new = planned.service
        elif current is not None:
            new = type(current).deserialize(type(current).serialize(current))
        else:
            return None  # nothing to write the state on: the first deploy creates the service
        planned.state.write(new)
        if not planned.update_mask:
            return new, None  # the whole service (a create, or a deploy's full PATCH)
        return new, list(dict.fromkeys([*planned.update_mask, "annotations"]))

    return change


def apply(
    hook: CloudRunPreviewHook, *, project: str, region: str, service: str, transition: Transition
) -> tuple[run_v2.Service | None, PreviewState]:
    """Run ``transition`` in one etag-guarded read-modify-write and wait; return the service and state."""
    written = hook.modify_service(project=project, region=region, service=service, change=_change(transition))
    return written, PreviewState.read(written)


def start_apply(
    hook: CloudRunPreviewHook, *, project: str, region: str, service: str, transition: Transition
) -> str | None:
    """Like :func:`apply`, but return the write's operation name without waiting (None: nothing written)."""
    return hook.modify_service(
        project=project, region=region, service=service, change=_change(transition), wait=False
    )


def read(hook: CloudRunPreviewHook, *, project: str, region: str, service: str) -> PreviewState:
    """Read the state of a service through the hook (empty when the service does not exist)."""
    return PreviewState.read(hook.get_service(project=project, region=region, service=service))


def claims(state: PreviewState) -> Iterable[Preview]:
    """The previews that hold a slot."""
    return (p for p in state if p.slot)
