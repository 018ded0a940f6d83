"""The Cloud Run hook: services and revisions through the Admin API v2 (``google-cloud-run``, REST).

It stands on the google provider's connection (conn_type ``google_cloud_platform``), so a real project
works with an ordinary google connection, and the local emulator with two extras:
``{"api_endpoint": "http://127.0.0.1:<port>", "is_anonymous": true}``.

The pure preview model (limits, traffic rewrites) lives in
:mod:`faye_plugin.hooks.cloud_run_model` and is re-exported here, so operators import one module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import requests
from airflow.providers.google.common.consts import CLIENT_INFO
from airflow.providers.google.common.hooks.base_google import GoogleBaseHook
from google.api_core import exceptions as gexc
from google.api_core.operation import Operation
from google.api_core.retry import Retry, if_exception_type
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import field_mask_pb2

from faye_plugin.hooks.cloud_run_model import (
    check_labels,
    check_service_name,
    check_tag_limits,
    is_new_service,
    preview_tag,
    revision_name,
    served_revision,
    service_path,
    short_name,
    tag_revision,
    tag_uri,
    tags,
    with_preview_revision,
    with_tag_on,
    without_tag,
    without_tags,
)

__all__ = [
    "CONFLICT_ERRORS",
    "TRANSIENT_ERRORS",
    "CloudRunPreviewHook",
    "check_labels",
    "check_service_name",
    "check_tag_limits",
    "is_new_service",
    "preview_tag",
    "revision_name",
    "served_revision",
    "service_path",
    "short_name",
    "tag_revision",
    "tag_uri",
    "tags",
    "with_preview_revision",
    "with_tag_on",
    "without_tag",
    "without_tags",
]

# Errors worth repeating the same request for: the server or the network said "not now".
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    gexc.TooManyRequests,  # 429
    gexc.BadGateway,  # 502
    gexc.ServiceUnavailable,  # 503
    gexc.GatewayTimeout,  # 504 (DeadlineExceeded is a subclass)
    requests.exceptions.ConnectionError,
)
# Errors of a lost optimistic-concurrency race (stale etag): re-read, re-apply the change, write again.
CONFLICT_ERRORS: tuple[type[Exception], ...] = (gexc.Conflict, gexc.PreconditionFailed)

ServiceChange = Callable[[run_v2.Service | None], tuple[run_v2.Service, list[str] | None] | None]


class CloudRunPreviewHook(GoogleBaseHook):
    """Read and change Cloud Run services and revisions, one thin method per API call.

    :param gcp_conn_id: the google connection. Extras ``api_endpoint`` (point the client at another
        endpoint, e.g. the local emulator) and ``is_anonymous`` (send no credentials) are honoured.
    :param impersonation_chain: optional service account(s) to impersonate.
    :param operation_timeout: seconds to wait for a long-running operation.
    :param retry_timeout: overall seconds to keep retrying a request that failed transiently.
    """

    conn_name_attr = "gcp_conn_id"
    default_conn_name = "faye_cloud_run"
    conn_type = "google_cloud_platform"
    hook_name = "faye: Cloud Run services"

    def __init__(
        self,
        gcp_conn_id: str = default_conn_name,
        impersonation_chain: str | Sequence[str] | None = None,
        *,
        operation_timeout: float = 300.0,
        retry_timeout: float = 60.0,
        quota_project_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        # GoogleBaseHook.__init__ reads the connection at once. faye's hooks do no I/O before their
        # first call (a trigger may build one inside the event loop; a DAG file may build one at
        # parse time), so set the attributes it sets and read the connection on first use: `extras`.
        super(GoogleBaseHook, self).__init__(**kwargs)
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        self.quota_project_id = quota_project_id
        self._cached_credentials = None
        self._cached_project_id = None
        self.operation_timeout = operation_timeout
        self.retry_timeout = retry_timeout
        self._services: run_v2.ServicesClient | None = None
        self._revisions: run_v2.RevisionsClient | None = None

    @functools.cached_property
    def extras(self) -> dict[str, Any]:  # type: ignore[override]
        """The connection's extras, read on first use (GoogleBaseHook reads them in ``__init__``)."""
        return dict(self.get_connection(self.gcp_conn_id).extra_dejson)

    # --- clients ------------------------------------------------------------------------------------

    @property
    def retry(self) -> Retry:
        """The retry policy of every call: only TRANSIENT_ERRORS, exponential back-off, bounded."""
        return Retry(
            predicate=if_exception_type(*TRANSIENT_ERRORS),
            initial=0.2,
            maximum=5.0,
            multiplier=2.0,
            timeout=self.retry_timeout,
        )

    def _client_kwargs(self) -> dict[str, Any]:
        endpoint = self._get_field("api_endpoint", None)
        return {
            "credentials": self.get_credentials(),
            "transport": "rest",
            "client_options": self.get_client_options(api_endpoint_override=endpoint or None),
            "client_info": CLIENT_INFO,
        }

    def get_conn(self) -> run_v2.ServicesClient:
        """Return the (cached) services client."""
        return self.services_client

    @property
    def services_client(self) -> run_v2.ServicesClient:
        if self._services is None:
            self._services = run_v2.ServicesClient(**self._client_kwargs())
        return self._services

    @property
    def revisions_client(self) -> run_v2.RevisionsClient:
        if self._revisions is None:
            self._revisions = run_v2.RevisionsClient(**self._client_kwargs())
        return self._revisions

    # --- services -----------------------------------------------------------------------------------

    def get_service(self, *, project: str, region: str, service: str) -> run_v2.Service | None:
        """Return the service, or None if it does not exist."""
        try:
            return self.services_client.get_service(
                name=service_path(project, region, service), retry=self.retry
            )
        except gexc.NotFound:
            return None

    def _start_update(
        self,
        service: run_v2.Service,
        update_mask: list[str] | None,
        allow_missing: bool,
        validate_only: bool,
    ) -> Operation:
        request = run_v2.UpdateServiceRequest(
            service=service, allow_missing=allow_missing, validate_only=validate_only
        )
        if update_mask:
            request.update_mask = field_mask_pb2.FieldMask(paths=list(update_mask))
        return self.services_client.update_service(request=request, retry=self.retry)

    def update_service(
        self,
        service: run_v2.Service,
        *,
        update_mask: list[str] | None = None,
        allow_missing: bool = False,
        validate_only: bool = False,
    ) -> run_v2.Service:
        """PATCH the service and wait for the operation; return the service as Cloud Run left it.

        The service's ``etag`` is sent when set, so a write based on a stale read fails with one of
        CONFLICT_ERRORS instead of overwriting someone else's change. ``allow_missing`` creates the
        service if it does not exist. Transient errors are retried (see :attr:`retry`).
        """
        operation = self._start_update(service, update_mask, allow_missing, validate_only)
        result: run_v2.Service = operation.result(timeout=self.operation_timeout, retry=self.retry)
        return result

    def start_update_service(
        self,
        service: run_v2.Service,
        *,
        update_mask: list[str] | None = None,
        allow_missing: bool = False,
        validate_only: bool = False,
    ) -> str:
        """PATCH the service and return the operation's name without waiting (for a trigger to poll)."""
        operation = self._start_update(service, update_mask, allow_missing, validate_only)
        return str(operation.operation.name)

    def get_operation(self, name: str) -> dict[str, Any]:
        """Return ``{"name", "done", "error"}`` of a long-running operation; error is None or a message."""
        operation: operations_pb2.Operation = self.services_client.get_operation(
            request={"name": name}, retry=self.retry
        )
        error = None
        if operation.HasField("error"):
            error = f"code {operation.error.code}: {operation.error.message}"
        return {"name": operation.name, "done": bool(operation.done), "error": error}

    def delete_service(self, *, project: str, region: str, service: str) -> bool:
        """Delete the service and wait; return False if it did not exist."""
        try:
            operation = self.services_client.delete_service(
                name=service_path(project, region, service), retry=self.retry
            )
        except gexc.NotFound:
            return False
        operation.result(timeout=self.operation_timeout, retry=self.retry)
        return True

    @overload
    def modify_service(
        self,
        *,
        project: str,
        region: str,
        service: str,
        change: ServiceChange,
        attempts: int = 5,
        wait: Literal[True] = True,
    ) -> run_v2.Service | None: ...

    @overload
    def modify_service(
        self,
        *,
        project: str,
        region: str,
        service: str,
        change: ServiceChange,
        attempts: int = 5,
        wait: Literal[False],
    ) -> str | None: ...

    def modify_service(
        self,
        *,
        project: str,
        region: str,
        service: str,
        change: ServiceChange,
        attempts: int = 5,
        wait: bool = True,
    ) -> run_v2.Service | str | None:
        """Read, change and write the service, starting over when the write lost a race.

        ``change`` gets the current service (None if missing) and returns ``(new_service, update_mask)``
        to write, or None to write nothing. When the write fails with one of CONFLICT_ERRORS (another
        writer changed the service since the read: its etag is stale), the whole cycle runs again, at
        most ``attempts`` times. A missing service is created (``allow_missing``). Returns the service
        as written, or as read when nothing was written. With ``wait=False`` the write's operation is
        not waited for: its name is returned (None when nothing was written), for a trigger or a poll
        loop to follow (a deploy's PATCH starts a revision, which takes a while).
        """
        last: Exception | None = None
        for _ in range(attempts):
            current = self.get_service(project=project, region=region, service=service)
            planned = change(current)
            if planned is None:
                return current if wait else None
            new_service, update_mask = planned
            try:
                if not wait:
                    return self.start_update_service(
                        new_service, update_mask=update_mask, allow_missing=current is None
                    )
                return self.update_service(
                    new_service, update_mask=update_mask, allow_missing=current is None
                )
            except CONFLICT_ERRORS as exc:
                self.log.info("Service %s changed under us (%s); re-reading", service, exc)
                last = exc
        if last is None:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        raise last

    # --- revisions ----------------------------------------------------------------------------------

    def get_revision(self, name: str) -> run_v2.Revision | None:
        """Return the revision (full resource name), or None if it does not exist."""
        try:
            return self.revisions_client.get_revision(name=name, retry=self.retry)
        except gexc.NotFound:
            return None

    def list_revisions(self, *, project: str, region: str, service: str) -> list[run_v2.Revision]:
        """Return every revision of the service (all pages)."""
        pages = self.revisions_client.list_revisions(
            parent=service_path(project, region, service), retry=self.retry
        )
        return list(pages)

    def delete_revision(self, name: str) -> bool:
        """Delete a revision (full resource name) and wait; return False if it did not exist.

        Cloud Run only deletes revisions no traffic target (percent or tag) refers to.
        """
        try:
            operation = self.revisions_client.delete_revision(name=name, retry=self.retry)
        except gexc.NotFound:
            return False
        operation.result(timeout=self.operation_timeout, retry=self.retry)
        return True
