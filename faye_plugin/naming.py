"""The names and numbers every layer shares: a preview's tag, its lifetime defaults and expiry arithmetic.

One place for each, so the tag format ``pr-<N>`` and the TTL defaults are written once (the catalogue,
the request schema, the Cloud Run model, the queue and the plugin's UI links all import them here).
Nothing here does I/O or imports anything heavy: the plugin and the DAG parser import it.
"""

from __future__ import annotations

import re

TAG_PREFIX = "pr-"
TAG_RE = re.compile(r"^pr-(\d+)$")
HOUR = 3600
DEFAULT_TTL_HOURS = 72
DEFAULT_MAX_TTL_HOURS = 720
# How long a preview may live from its first deploy, however often it is redeployed (faye_cleanup).
DEFAULT_MAX_LIFETIME_HOURS = 720


def tag_of(pr: int | str) -> str:
    """The Cloud Run traffic tag of pull request ``pr``: ``pr-<N>`` (no validation; see preview_tag)."""
    return f"{TAG_PREFIX}{int(pr)}"


def pr_of(tag: str) -> int | None:
    """The pull request number of a preview tag, or None when ``tag`` is not one of faye's."""
    match = TAG_RE.match(tag)
    return int(match.group(1)) if match else None


def expires_at(now: float, hours: int) -> int:
    """The expiry (epoch seconds) of a preview touched at ``now`` that lives ``hours``."""
    return int(now) + int(hours) * HOUR
