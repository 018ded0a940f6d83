"""faye's domain exceptions: small, few, and each carrying what a user needs to act on it."""

from __future__ import annotations


class FayeError(Exception):
    """Base class of every error faye raises on purpose."""


class CatalogueError(FayeError, ValueError):
    """The service catalogue is missing, malformed, or does not know the name asked for."""


class InvalidRequestError(FayeError, ValueError):
    """A deploy/build/test request breaks a rule (unknown slot, tag too long, bad sha, ...)."""


class CloudRunLimitError(InvalidRequestError):
    """A request would break one of Cloud Run's own limits (tag length, DNS label rules)."""


class RegistryError(FayeError, RuntimeError):
    """The registry answered something other than found / not found."""


class ProxyError(FayeError, RuntimeError):
    """The preview proxy's admin API refused a change."""


class SlotBusyError(FayeError, RuntimeError):
    """The slot asked for is held by another preview and the policy forbids taking it."""


class TestServerUnavailableError(FayeError, RuntimeError):
    """No test server could be leased."""

    __test__ = False  # not a pytest test class


class BuildFailedError(FayeError, RuntimeError):
    """The image build failed; the message carries the builder's own error."""


class StackError(FayeError, RuntimeError):
    """The local stack could not be started, stopped or inspected."""


class CloudRunApiError(FayeError):
    """The Cloud Run emulator refuses a request, as the real API would: HTTP status, gRPC status, message."""

    def __init__(self, http_status: int, status: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.message = message


class AirflowApiError(FayeError, RuntimeError):
    """Airflow's REST API answered an error (status and body in the message) or could not be reached."""


class SupersededError(FayeError, RuntimeError):
    """This deploy was superseded by a newer one of the same preview; it stops before writing anything."""
