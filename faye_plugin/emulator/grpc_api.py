"""The Cloud Run Admin API v2 over gRPC (TLS): `google.cloud.run.v2.Services`, `Revisions` and
`google.longrunning.Operations`, answered by the same engine as the REST app.

Requests are the client's own protobuf types (decoded with proto-plus' `Type.deserialize`), turned into
the JSON form the engine speaks; answers go back through the real descriptors. Errors carry the same
gRPC status, message and `google.rpc` details (BadRequest, ErrorInfo) as the REST answer's `error`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from faye_plugin.emulator import codec
from faye_plugin.emulator.engine import Engine
from faye_plugin.emulator.faults import FaultTable
from faye_plugin.exceptions import CloudRunApiError

log = logging.getLogger(__name__)
assert error_details_pb2  # imported so that BadRequest/ErrorInfo details resolve in JSON <-> Any
MAX_WAIT_SECONDS = 60.0
CERT_FILE, KEY_FILE = "server.pem", "server-key.pem"

# RPC -> (request decoder, engine call on the decoded request, answer message class)
Call = Callable[[Engine, Any], Any]


def _dict(message: Any) -> dict[str, Any]:
    """A proto-plus message as the JSON dict REST clients send (camelCase, defaults left out)."""
    return codec.from_proto(type(message).pb(message))


def _mask(request: run_v2.UpdateServiceRequest) -> str | None:
    paths = list(request.update_mask.paths) if "update_mask" in request else []
    return ",".join(paths) if paths else None


def _wait(engine: Engine, request: operations_pb2.WaitOperationRequest) -> dict[str, Any]:
    timeout = (
        request.timeout.ToTimedelta().total_seconds() if request.HasField("timeout") else MAX_WAIT_SECONDS
    )
    deadline = time.monotonic() + min(timeout, MAX_WAIT_SECONDS)
    while True:
        op = engine.get_operation(request.name)
        if op["done"] or time.monotonic() >= deadline:
            return op
        time.sleep(0.1)


Operation = operations_pb2.Operation
SERVICES: dict[str, tuple[Callable[[bytes], Any], Call, type[Message]]] = {
    "CreateService": (
        run_v2.CreateServiceRequest.deserialize,
        lambda e, r: e.create_service(r.parent, r.service_id, _dict(r.service), r.validate_only),
        Operation,
    ),
    "GetService": (
        run_v2.GetServiceRequest.deserialize,
        lambda e, r: e.get_service(r.name),
        run_v2.Service.pb(),
    ),
    "ListServices": (
        run_v2.ListServicesRequest.deserialize,
        lambda e, r: e.list_services(r.parent, r.page_size, r.page_token),
        run_v2.ListServicesResponse.pb(),
    ),
    "UpdateService": (
        run_v2.UpdateServiceRequest.deserialize,
        lambda e, r: e.update_service(
            r.service.name, _dict(r.service), _mask(r), r.allow_missing, r.validate_only
        ),
        Operation,
    ),
    "DeleteService": (
        run_v2.DeleteServiceRequest.deserialize,
        lambda e, r: e.delete_service(r.name, r.etag, r.validate_only),
        Operation,
    ),
}
REVISIONS: dict[str, tuple[Callable[[bytes], Any], Call, type[Message]]] = {
    "GetRevision": (
        run_v2.GetRevisionRequest.deserialize,
        lambda e, r: e.get_revision(r.name),
        run_v2.Revision.pb(),
    ),
    "ListRevisions": (
        run_v2.ListRevisionsRequest.deserialize,
        lambda e, r: e.list_revisions(r.parent, r.page_size, r.page_token),
        run_v2.ListRevisionsResponse.pb(),
    ),
    "DeleteRevision": (
        run_v2.DeleteRevisionRequest.deserialize,
        lambda e, r: e.delete_revision(r.name, r.etag, r.validate_only),
        Operation,
    ),
}
OPERATIONS: dict[str, tuple[Callable[[bytes], Any], Call, type[Message]]] = {
    "GetOperation": (
        operations_pb2.GetOperationRequest.FromString,
        lambda e, r: e.get_operation(r.name),
        Operation,
    ),
    "ListOperations": (
        operations_pb2.ListOperationsRequest.FromString,
        lambda e, r: e.list_operations(r.name, r.page_size, r.page_token),
        operations_pb2.ListOperationsResponse,
    ),
    "DeleteOperation": (
        operations_pb2.DeleteOperationRequest.FromString,
        lambda e, r: e.delete_operation(r.name),
        empty_pb2.Empty,
    ),
    "WaitOperation": (operations_pb2.WaitOperationRequest.FromString, _wait, Operation),
}


def status_of(err: CloudRunApiError) -> grpc.Status:
    """The gRPC status (with `grpc-status-details-bin`) of an error the REST app answers as JSON."""
    code = (
        grpc.StatusCode[err.status] if err.status in grpc.StatusCode.__members__ else grpc.StatusCode.UNKNOWN
    )
    status = json_format.ParseDict(
        {"code": code.value[0], "message": err.message, "details": err.details}, status_pb2.Status()
    )
    return rpc_status.to_status(status)


def _handler(
    engine: Engine, faults: FaultTable, rpc: str, entry: tuple[Callable[[bytes], Any], Call, type[Message]]
) -> grpc.RpcMethodHandler:
    decode, call, answer_cls = entry

    def handle(request: Any, context: grpc.ServicerContext) -> bytes:
        try:
            fault = faults.take(rpc)
            if fault is not None:
                if fault.delay_seconds:
                    time.sleep(fault.delay_seconds)
                if fault.status is not None:
                    raise fault.error()
            return codec.encode(call(engine, request), answer_cls)
        except CloudRunApiError as err:
            context.abort_with_status(status_of(err))
        except Exception:  # never crash on input: answer INTERNAL and keep serving
            log.exception("unexpected error in %s", rpc)
            context.abort_with_status(
                status_of(CloudRunApiError(500, "INTERNAL", "Internal error encountered."))
            )
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=decode)


def serve(engine: Engine, faults: FaultTable, host: str, port: int, tls_dir: Path) -> grpc.Server:
    """Start the gRPC server on host:port with `tls_dir`'s server certificate; return it (running)."""
    server = grpc.server(ThreadPoolExecutor(max_workers=16, thread_name_prefix="grpc"))
    for service, methods in (
        ("google.cloud.run.v2.Services", SERVICES),
        ("google.cloud.run.v2.Revisions", REVISIONS),
        ("google.longrunning.Operations", OPERATIONS),
    ):
        handlers = {rpc: _handler(engine, faults, rpc, entry) for rpc, entry in methods.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    credentials = grpc.ssl_server_credentials(
        [((tls_dir / KEY_FILE).read_bytes(), (tls_dir / CERT_FILE).read_bytes())]
    )
    if not server.add_secure_port(f"{host}:{port}", credentials):
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    server.start()
    log.info("gRPC (TLS) on %s:%s", host, port)
    return server
