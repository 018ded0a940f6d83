"""SQLAlchemy ``connect_args`` for the embedded stack's SQLite metadata database.

Airflow imports this by path (``[database] sql_alchemy_connect_args``). SQLite lets one writer at a
time in; Python's default busy timeout of 5 s made a write that met another (an API trigger while a
task pushed its XCom) fail with HTTP 500 "database is locked" on a busy 2-core machine. A writer now
waits up to 60 s for the lock instead.
"""

from __future__ import annotations

from typing import Any

CONNECT_ARGS: dict[str, Any] = {"timeout": 60}
