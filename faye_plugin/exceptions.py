"""faye's domain exceptions: small, few, and each carrying what a user needs to act on it."""

from __future__ import annotations

from typing import Any


class FayeError(Exception):
    """Base class of every error faye raises on purpose.

    ``hint`` says what a person should do about it; a task logs ``<message> - <hint>`` as one line
    (faye_plugin.task_errors).
    """

    hint: str = ""


class CatalogueError(FayeError, ValueError):
    """The service catalogue is missing, malformed, or does not know the name asked for."""

    hint = "fix the service or slot in the request (or the catalogue), then trigger again"


class InvalidRequestError(FayeError, ValueError):
    """A deploy/build/test request breaks a rule (unknown slot, tag too long, bad sha, ...)."""

    hint = "fix the request's conf, then trigger again"


class CloudRunLimitError(InvalidRequestError):
    """A request would break one of Cloud Run's own limits (tag length, DNS label rules)."""

    hint = "change the request to fit Cloud Run's limits (shorter names), then trigger again"


class RegistryError(FayeError, RuntimeError):
    """The registry answered something other than found / not found."""

    hint = "check the registry (faye doctor), then clear the failed task"


class ProxyError(FayeError, RuntimeError):
    """The preview proxy's admin API refused a change."""

    hint = "check the preview proxy (faye doctor), then clear the failed task"


class SlotBusyError(FayeError, RuntimeError):
    """The slot asked for is held by another preview and the policy forbids taking it."""

    hint = "ask for another slot (or none), or wait until the holder's preview expires"


class SlotTakenError(SlotBusyError):
    """A preview-state transition would take a slot another live claim holds, or drop another's claim."""

    hint = "deploy again: the safe point then waits for the slot or picks another"


class PreviewStateError(FayeError, ValueError):
    """A service's preview state (annotation ``faye.dev/previews``) cannot be read."""

    hint = "fix or remove the annotation by hand (faye doctor names the service); faye does not guess"


class TestServerUnavailableError(FayeError, RuntimeError):
    """No test server could be leased."""

    hint = "bring a test server back (faye pool), then clear the failed task"

    __test__ = False  # not a pytest test class


class TestsFailedError(FayeError, RuntimeError):
    """A service's tests failed (non-zero exit) or ran past their timeout; their output is in the log."""

    hint = "the tests' own output is in the lines above: fix the commit (or its tests), then trigger again"

    __test__ = False  # not a pytest test class


class BuildFailedError(FayeError, RuntimeError):
    """The image build failed; the message carries the builder's own error."""

    hint = "fix the commit or the build it names (the builder's output is above), then trigger again"


class StackError(FayeError, RuntimeError):
    """The local stack could not be started, stopped or inspected."""


class CloudRunApiError(FayeError):
    """The Cloud Run emulator refuses a request, as the real API would: HTTP status, gRPC status, message."""

    hint = "Cloud Run refused: fix what it names, or clear the failed task once Cloud Run answers again"

    def __init__(
        self, http_status: int, status: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.message = message
        # google.rpc detail messages in their JSON form (each with its "@type"), as `error.details`
        self.details = details or []


class AirflowApiError(FayeError, RuntimeError):
    """Airflow's REST API answered an error (status and body in the message) or could not be reached."""


class SupersededError(FayeError, RuntimeError):
    """This deploy was superseded by a newer one of the same preview; it stops before writing anything."""

    hint = "nothing to do: the newer run deploys this PR"


class RollbackError(FayeError, ValueError):
    """A rollback has no revision to go back to, or was asked for one that is not the PR's.

    Its message already ends with what to do (another ``--to``, or a deploy), so it has no hint.
    """


class GithubReportError(FayeError, RuntimeError):
    """GitHub refused a report (bad token, unknown repository, invalid field) or stayed unreachable.

    The preview itself is not affected: reporting never decides a preview's fate (docs/github.md).
    """

    hint = "check the connection and the catalogue's github.repo, then clear the failed report task"
