"""A preview's lifetime and identity rules, as pure functions: its TTL, its revision labels, sha matching.

Nothing here does I/O. Who holds which slot and until when is the preview state
(:mod:`faye_plugin.preview_state`); which slot a deploy takes is :mod:`faye_plugin.slots`; the tag
format and expiry arithmetic are :mod:`faye_plugin.naming`'s.
"""

from __future__ import annotations

from faye_plugin.catalogue import Defaults
from faye_plugin.exceptions import InvalidRequestError

# Revision labels set at deploy (immutable): who the revision was built for.
LABEL_PR = "faye-pr"
LABEL_SHA = "faye-sha"
LABEL_SLOT = "faye-slot"


def ttl_hours(requested: int | None, defaults: Defaults) -> int:
    """Return the preview lifetime in hours: the request's, else the catalogue default, within bounds."""
    hours = defaults.ttl_hours if requested is None else int(requested)
    if hours < 1 or hours > defaults.max_ttl_hours:
        raise InvalidRequestError(
            f"ttl_hours: {hours} is outside 1..{defaults.max_ttl_hours} (the catalogue's max_ttl_hours)"
        )
    return hours


def sha_matches(requested: str, deployed: str | None) -> bool:
    """True when a deployed full sha is the requested one (which may be a 7+ character prefix)."""
    if not deployed:
        return False
    requested, deployed = requested.lower(), deployed.lower()
    return deployed == requested or (len(requested) < len(deployed) and deployed.startswith(requested))
