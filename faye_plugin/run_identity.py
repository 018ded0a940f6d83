"""The readable run id of a faye run: ``<service>-pr-<N>-<sha7>-<UTC time>``.

Every run faye starts itself (``faye deploy``, the docs' curl examples, CI following docs/deploy.md)
gets one, so the runs list of the Airflow UI says which service, PR and commit each run is for.
Airflow's own rules for a custom run id (``[scheduler] allowed_run_id_pattern``, default
``^[A-Za-z0-9_.~:+-]+$``; no ``..``; no ``scheduled__``/``backfill__``/``asset_triggered__``
prefix) hold for every id built here: the service name is a DNS label, the sha is hex, the time is
``%Y%m%dT%H%M%S.<ms>Z``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

# Airflow 3.3's default allowed_run_id_pattern (airflow/config_templates/config.yml).
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.~:+-]+$")
RESERVED_PREFIXES = ("scheduled__", "backfill__", "asset_triggered__")
SHORT_SHA = 7


def run_id_time(at: datetime) -> str:
    """``20261201T211446.123Z``: the UTC time to the millisecond (two triggers in one second differ)."""
    at = at.astimezone(UTC)
    return f"{at:%Y%m%dT%H%M%S}.{at.microsecond // 1000:03d}Z"


def run_id_for(service: str, pr: int, git_sha: str, at: datetime | None = None) -> str:
    """The run id of a deploy/build/test of ``service`` PR ``pr`` at ``git_sha``, triggered ``at``."""
    name = re.sub(r"[^a-z0-9-]+", "-", service.lower()).strip("-") or "service"
    sha = re.sub(r"[^0-9a-f]", "", git_sha.lower())[:SHORT_SHA] or "nosha"
    run_id = f"{name}-pr-{int(pr)}-{sha}-{run_id_time(at or datetime.now(UTC))}"
    if not is_valid_run_id(run_id):  # pragma: no cover - guarded by the construction above
        raise ValueError(f"built an invalid run id {run_id!r}")
    return run_id


def is_valid_run_id(run_id: str) -> bool:
    """True when Airflow 3.3 accepts ``run_id`` as a custom run id (default settings)."""
    return (
        bool(RUN_ID_PATTERN.match(run_id)) and ".." not in run_id and not run_id.startswith(RESERVED_PREFIXES)
    )


def action_run_id(action: str, service: str, pr: int, at: datetime | None = None) -> str:
    """The run id of a teardown or rollback of ``service`` PR ``pr``: ``hello-pr-7-teardown-<UTC time>``."""
    name = re.sub(r"[^a-z0-9-]+", "-", service.lower()).strip("-") or "service"
    verb = re.sub(r"[^a-z]+", "", action.lower()) or "action"
    run_id = f"{name}-pr-{int(pr)}-{verb}-{run_id_time(at or datetime.now(UTC))}"
    if not is_valid_run_id(run_id):  # pragma: no cover - guarded by the construction above
        raise ValueError(f"built an invalid run id {run_id!r}")
    return run_id


#: The teardown and rollback DAGs, and the word their run ids carry (faye_plugin.params names them).
ACTION_WORDS = {"faye_teardown": "teardown", "faye_rollback": "rollback"}


def run_id_for_conf(dag_id: str, conf: Any, at: datetime | None = None) -> str | None:
    """The readable run id of a trigger of ``dag_id`` with ``conf`` (valid), None when the conf names
    no preview (``faye_cleanup``). The trigger gate gives it to a trigger that does not name its run."""
    if not isinstance(conf, dict) or "service" not in conf or "pr" not in conf:
        return None
    if dag_id in ACTION_WORDS:
        return action_run_id(ACTION_WORDS[dag_id], str(conf["service"]), int(conf["pr"]), at)
    if "git_sha" not in conf:
        return None
    return run_id_for(str(conf["service"]), int(conf["pr"]), str(conf["git_sha"]), at)
