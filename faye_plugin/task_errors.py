"""How a faye task fails: an expected error as one clear line, and the reason kept for the run note.

Airflow 3.3's task runner (``airflow/sdk/execution_time/task_runner.py``, ``_run_task_and_map_outcome``)
logs every failing exception with ``log.exception("Task failed with exception")``, the traceback of
the whole chain included - ``AirflowFailException`` too (it only stops retries); only
``AirflowSkipException`` (the task is *skipped*, not failed) and ``SystemExit`` (``log.error("Task
exited", exit_code=...)``, then failed or retried like any error) are logged without one. So faye
ends a task that failed for an expected reason with :class:`ExpectedFailure`, a ``SystemExit``,
raised ``from None`` after logging the one line itself: the log says what was wrong and what to do,
and shows no frames of faye or of the client library. Unexpected errors keep their traceback.

Expected errors: faye's own (:class:`~faye_plugin.exceptions.FayeError`: bad request, unknown
service, slot busy, Cloud Run refused, ...) and a 4xx answer of a Google API (the API refused the
request). Before the task reports its failure, the one-line reason is pushed as the XCom
``faye_error``, where :mod:`faye_plugin.run_listener` finds it to write the run note
``failed at <task>: <reason>`` (unexpected errors record ``<Type>: <message>``).

This is a listener too (``on_task_instance_running``, called in the task's process on the very copy
of the operator that is about to run): it guards that instance's ``execute`` and ``resume_execution``
for the tasks of faye's DAGs, so no operator needs to change and nothing is added to a run.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from airflow.listeners import hookimpl

from faye_plugin.exceptions import FayeError

REASON_KEY = "faye_error"
GUARDED = "_faye_guarded"
log = logging.getLogger(__name__)


class ExpectedFailure(SystemExit):
    """A task failed for an expected reason, already logged as one line (Airflow logs no traceback)."""

    def __init__(self, error: BaseException, line: str) -> None:
        super().__init__(1)
        self.error = error
        self.line = line


def _client_refusal() -> tuple[type[BaseException], ...]:
    try:
        from google.api_core.exceptions import ClientError
    except ImportError:  # pragma: no cover - the google provider is a dependency
        return ()
    return (ClientError,)


def _control_flow() -> tuple[type[BaseException], ...]:
    """Exceptions that steer Airflow (skip, reschedule, defer, ...) rather than report a failure."""
    from airflow.sdk import exceptions as sdk_exceptions

    names = (
        "AirflowSkipException",
        "AirflowRescheduleException",
        "DownstreamTasksSkipped",
        "DagRunTriggerException",
    )
    return tuple(getattr(sdk_exceptions, name) for name in names if hasattr(sdk_exceptions, name))


def first_line(text: str, limit: int = 1500) -> str:
    """``text`` as one log line: its lines joined, whole up to ``limit`` characters.

    The log keeps the whole reason (a deploy's names its revision, the operation and Cloud Run's own
    words, well past 300 characters); the run note shortens it on its own (``run_notes.NOTE_MAX``).
    """
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def explain(exc: BaseException) -> str:
    """One line: what was wrong, then what to do (the error class's ``hint``)."""
    text = first_line(str(exc)) or type(exc).__name__
    hint = getattr(exc, "hint", "")
    if not isinstance(exc, FayeError):  # a Google API's 4xx
        text = f"Cloud Run refused the request: {text}"
        hint = "fix what it names (the request or the catalogue's cloud_run entry), then trigger again"
    return f"{text} - {hint}" if hint else text


def describe_unexpected(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(str(exc))}".rstrip(": ")


def record_reason(reason: str) -> None:
    """Push the run note's reason (XCom ``faye_error``); never masks the error being reported."""
    try:
        from airflow.sdk import get_current_context

        get_current_context()["ti"].xcom_push(REASON_KEY, reason)
    except Exception:  # the task's own error matters more than its note
        log.debug("could not record the failure reason", exc_info=True)


def guard(call: Callable[..., Any], task_log: Any = None) -> Callable[..., Any]:
    """``call`` that ends an expected error with :class:`ExpectedFailure` and records every reason."""
    if getattr(call, GUARDED, False):
        return call
    expected: tuple[type[BaseException], ...] = (FayeError, *_client_refusal())
    control: tuple[type[BaseException], ...] = _control_flow()
    logger = task_log or log

    @functools.wraps(call)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except control:
            raise
        except expected as exc:
            line = explain(exc)
            logger.error("%s", line)
            record_reason(line)
            raise ExpectedFailure(exc, line) from None
        except Exception as exc:
            record_reason(describe_unexpected(exc))
            raise

    setattr(guarded, GUARDED, True)
    return guarded


def guard_task(task: Any) -> None:
    """Guard one operator instance's ``execute`` and ``resume_execution`` (the resumed half of a
    deferral)."""
    task_log = getattr(task, "log", None)
    for name in ("execute", "resume_execution"):
        method = getattr(task, name, None)
        if method is not None:
            object.__setattr__(task, name, guard(method, task_log))


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    """Called by the task runner on the operator copy about to run: guard it when it is faye's."""
    task = getattr(task_instance, "task", None)
    dag_id = str(getattr(task_instance, "dag_id", "") or "")
    if task is not None and dag_id.startswith("faye_"):
        guard_task(task)
