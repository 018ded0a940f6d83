"""The stack's emulator over gRPC: `faye stack status --json` names the endpoint and the CA, and with
those two alone a plain `run_v2.ServicesClient()` (default transport) works, in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.integration

CLIENT = """
import sys
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

client = run_v2.ServicesClient(client_options=ClientOptions(api_endpoint=sys.argv[1]),
                               credentials=AnonymousCredentials())
print(type(client.transport).__name__)
print(len(list(client.list_services(parent="projects/local/locations/europe-west1"))) >= 0)
try:
    client.get_service(name="projects/local/locations/europe-west1/services/no-such-service")
except exceptions.NotFound as err:
    print(err.grpc_status_code.name, err.message)
"""


def test_status_names_the_grpc_endpoint_and_ca_and_they_suffice(stack: dict[str, Any]) -> None:
    endpoint, ca = stack["cloud_run_grpc_endpoint"], stack["cloud_run_grpc_ca"]
    assert endpoint.startswith("127.0.0.1:") and ca.endswith("/ca.pem")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = ca
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, endpoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "ServicesGrpcTransport",
        "True",
        "NOT_FOUND Resource 'no-such-service' of kind 'SERVICE' in region 'europe-west1' in project 'local' "
        "does not exist.",
    ]

    untrusted = dict(env, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=os.devnull)  # without the CA: refused
    refused = subprocess.run(
        [sys.executable, "-c", CLIENT + "\n", endpoint],
        env=untrusted,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode != 0
