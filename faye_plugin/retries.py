"""faye's one retry policy (tenacity), for the hooks that speak plain HTTP to a peer.

A call is sent again only when it failed with one of the caller's explicit transient errors (or, for
an HTTP answer, when the caller says the answer is transient: 429, 502, 503, 504), a bounded number of
times, with waits that double from ``first_wait`` up to ``max_wait``. Anything else is raised at the
first failure. After the last attempt the last transient error is raised as it is (the caller turns it
into its domain error), and a transient answer is returned as it is (the caller reports it).

The google Cloud Run hook keeps ``google.api_core.retry``: that is the google client's own mechanism.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

T = TypeVar("T")

#: HTTP answers worth sending the same request again for: rate limited, or a proxy/server restarting.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is tried again.

    :param attempts: tries in all (1 = no retry).
    :param first_wait: seconds before the second try; each later wait doubles.
    :param max_wait: the longest wait between two tries.
    """

    attempts: int = 3
    first_wait: float = 0.25
    max_wait: float = 4.0

    def with_attempts(self, attempts: int) -> RetryPolicy:
        return RetryPolicy(attempts=attempts, first_wait=self.first_wait, max_wait=self.max_wait)

    def retrying(
        self,
        transient: tuple[type[BaseException], ...],
        *,
        transient_error: Callable[[BaseException], bool] | None = None,
        transient_result: Callable[[Any], bool] | None = None,
        what: str = "call",
        logger: Any = None,
    ) -> Retrying:
        """A tenacity ``Retrying`` that retries only ``transient`` errors, the errors
        ``transient_error`` names (e.g. an answer 503 raised as an exception) and the answers
        ``transient_result`` names."""
        retry: Any = retry_if_exception_type(transient)
        if transient_error is not None:
            retry = retry | retry_if_exception(transient_error)
        if transient_result is not None:
            retry = retry | retry_if_result(transient_result)
        say = logger or log

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            failure = outcome.exception() if outcome is not None and outcome.failed else None
            why = f"{type(failure).__name__}: {failure}" if failure else "a transient answer"
            wait = state.next_action.sleep if state.next_action else 0.0
            say.info(
                "%s: %s (try %d of %d); retrying in %.2fs",
                what,
                why,
                state.attempt_number,
                self.attempts,
                wait,
            )

        return Retrying(
            retry=retry,
            stop=stop_after_attempt(max(1, self.attempts)),
            wait=wait_exponential(multiplier=self.first_wait, max=self.max_wait),
            before_sleep=before_sleep,
            retry_error_callback=_last_outcome,
        )

    def call(
        self,
        fn: Callable[[], T],
        transient: tuple[type[BaseException], ...],
        *,
        transient_error: Callable[[BaseException], bool] | None = None,
        transient_result: Callable[[Any], bool] | None = None,
        what: str = "call",
        logger: Any = None,
    ) -> T:
        """Call ``fn`` under this policy; see the module docstring for what is retried and returned."""
        retrying = self.retrying(
            transient,
            transient_error=transient_error,
            transient_result=transient_result,
            what=what,
            logger=logger,
        )
        result: T = retrying(fn)
        return result


def _last_outcome(state: RetryCallState) -> Any:
    """Out of attempts: raise the last error as it is, or return the last (transient) answer."""
    assert state.outcome is not None
    return state.outcome.result()


#: The policy of every faye HTTP hook (proxy, registry, Airflow's REST API): 3 tries, 0.25 s then 0.5 s.
DEFAULT_POLICY = RetryPolicy()


def transient_status(response: Any) -> bool:
    """True for an HTTP answer (``status_code``) in TRANSIENT_STATUSES."""
    return getattr(response, "status_code", None) in TRANSIENT_STATUSES
