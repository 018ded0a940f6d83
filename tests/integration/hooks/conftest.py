"""Fixtures of the hook tests: real peers the shared stack does not provide (see registry_peers.py)."""

from __future__ import annotations

from registry_peers import token_registry

__all__ = ["token_registry"]
