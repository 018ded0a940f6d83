"""Expiry math, slot holders and no-op matching (faye_plugin.previews), with no stack."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from faye_plugin.catalogue import Defaults
from faye_plugin.exceptions import InvalidRequestError
from faye_plugin.hooks.cloud_run_model import PreviewRecord
from faye_plugin.previews import (
    HOUR,
    deployed_record,
    expires_at,
    holders_by_slot,
    is_expired,
    sha_matches,
    slot_to_wait_for,
    ttl_hours,
    with_expiry,
)
from faye_plugin.queue import Holder, choose_slot

SHA = "a" * 40


@dataclass(frozen=True)
class Route:
    slot: str
    service: str
    pr: int
    sha: str = SHA


def record(
    pr: int,
    *,
    slot: str = "",
    expires: int = 1000,
    revision: str = "",
    pinned: bool = False,
    deployed_at: int = 0,
) -> PreviewRecord:
    return PreviewRecord(
        tag=f"pr-{pr}",
        pr=pr,
        sha=SHA if revision else "",
        slot=slot,
        revision=revision,
        expires=expires,
        pinned=pinned,
        deployed_at=deployed_at,
    )


def test_ttl_defaults_and_bounds() -> None:
    defaults = Defaults(ttl_hours=72, max_ttl_hours=100)
    assert ttl_hours(None, defaults) == 72
    assert ttl_hours(5, defaults) == 5
    with pytest.raises(InvalidRequestError, match="max_ttl_hours"):
        ttl_hours(101, defaults)
    with pytest.raises(InvalidRequestError):
        ttl_hours(0, defaults)


def test_expires_at_adds_hours() -> None:
    assert expires_at(1_000.7, 2) == 1_000 + 2 * HOUR


def test_is_expired_respects_pin() -> None:
    assert is_expired(record(1, expires=100), now=100)
    assert not is_expired(record(1, expires=101), now=100)
    assert not is_expired(record(1, expires=1, pinned=True), now=100)


def test_with_expiry_creates_a_record_for_a_new_tag() -> None:
    new = with_expiry({}, tag="pr-3", pr=3, expires=500)
    assert new["pr-3"].expires == 500
    assert (new["pr-3"].slot, new["pr-3"].revision) == ("", "")


def test_with_expiry_only_pushes_out() -> None:
    old = {"pr-3": record(3, expires=900, slot="a", revision="r1", pinned=True)}
    assert with_expiry(old, tag="pr-3", pr=3, expires=500)["pr-3"].expires == 900
    pushed = with_expiry(old, tag="pr-3", pr=3, expires=1500)["pr-3"]
    assert (pushed.expires, pushed.slot, pushed.pinned) == (1500, "a", True)
    assert old["pr-3"].expires == 900  # the input is not changed


def test_deployed_record_takes_the_slot_and_keeps_the_pin() -> None:
    previews = {
        "pr-1": record(1, slot="a", revision="hello-pr-1-aaaaaaa", deployed_at=10),
        "pr-2": record(2, expires=50, pinned=True),
    }
    new = deployed_record(
        previews, tag="pr-2", pr=2, sha=SHA, slot="a", revision="hello-pr-2-aaaaaaa", expires=40, now=77
    )
    assert new["pr-1"].slot == ""
    assert new["pr-2"].slot == "a"
    assert new["pr-2"].pinned is True
    assert new["pr-2"].expires == 50
    assert new["pr-2"].deployed_at == 77
    assert new["pr-2"].revision == "hello-pr-2-aaaaaaa"


def test_holders_merge_routes_and_records() -> None:
    records = [
        record(1, slot="a", revision="r1", deployed_at=100),
        record(2, slot="b", revision="r2", deployed_at=50),  # claims b, its route was never written
    ]
    routes = [Route("a", "hello", 1), Route("c", "hello", 9), Route("d", "other", 4)]
    holders = holders_by_slot("hello", records, routes)
    assert set(holders) == {"a", "b", "c"}
    assert holders["a"].pr == 1 and holders["a"].deployed_at == 100
    assert holders["b"].pr == 2
    assert holders["c"].pr == 9 and holders["c"].deployed_at == 0.0


def test_slot_choice_from_holders_evicts_the_oldest() -> None:
    records = [
        record(1, slot="a", revision="r1", deployed_at=300),
        record(2, slot="b", revision="r2", deployed_at=100),
    ]
    holders = holders_by_slot("hello", records, [Route("a", "hello", 1), Route("b", "hello", 2)])
    same = choose_slot(
        service="hello",
        pr=1,
        requested_slot=None,
        service_slots=("a", "b"),
        holders=holders,
        policy="evict-oldest",
        now=1000,
    )
    assert (same.slot, same.evict) == ("a", None)
    new = choose_slot(
        service="hello",
        pr=3,
        requested_slot=None,
        service_slots=("a", "b"),
        holders=holders,
        policy="evict-oldest",
        now=1000,
    )
    assert new.slot == "b" and new.evict is not None and new.evict.pr == 2


def test_sha_matches_prefix_and_full() -> None:
    assert sha_matches(SHA, SHA)
    assert sha_matches("aaaaaaa", SHA)
    assert not sha_matches("b" * 40, SHA)
    assert not sha_matches(SHA, None)
    assert not sha_matches(SHA, "aaaaaaa")


def test_slot_to_wait_for_is_the_least_recently_used_unpinned() -> None:
    holders = {
        "a": Holder(pr=1, deployed_at=50.0, pinned=True),
        "b": Holder(pr=2, deployed_at=300.0),
        "c": Holder(pr=3, deployed_at=None, claimed_at=200.0),  # mid-deploy, claimed at 200
    }
    assert slot_to_wait_for(holders, ("a", "b", "c")) == "c"
    assert slot_to_wait_for({"a": holders["a"]}, ("a",)) is None
