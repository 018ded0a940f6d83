"""TTL bounds, expiry arithmetic, the tag format and sha matching (previews, naming), with no stack."""

from __future__ import annotations

import pytest

from faye_plugin.catalogue import Defaults
from faye_plugin.exceptions import InvalidRequestError
from faye_plugin.naming import HOUR, expires_at, pr_of, tag_of
from faye_plugin.previews import sha_matches, ttl_hours

SHA = "a" * 40


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


def test_the_tag_format_round_trips() -> None:
    assert tag_of(12) == "pr-12" and tag_of("7") == "pr-7"
    assert pr_of("pr-12") == 12 and pr_of("live") is None and pr_of("pr-x") is None


def test_sha_matches_prefix_and_full() -> None:
    assert sha_matches(SHA, SHA)
    assert sha_matches("aaaaaaa", SHA)
    assert not sha_matches("b" * 40, SHA)
    assert not sha_matches(SHA, None)
    assert not sha_matches(SHA, "aaaaaaa")
