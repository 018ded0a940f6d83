"""Fixtures for the Cloud Run emulator tests: test images in the stack's registry, emulator processes.

Every emulator here is a real `python -m faye_plugin.emulator` subprocess on free ports (REST and
gRPC) with its own temporary state folder, running revisions on the stack's `run` Docker host. Tests
talk to it through the official `google-cloud-run` client (or plain HTTP where an error body is
checked). Every test runs twice, once per transport (`transport`: "rest", then "grpc" - the client's
default transport, given nothing but the endpoint and, in GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, the
stack's CA, which also signed the test emulators' certificate).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from emulator_support import (
    MARKER_DOCKERFILE,
    SILENT_DOCKERFILE,
    Emulator,
    Images,
    build_and_push,
    launch,
)


@pytest.fixture(scope="session")
def images(stack: dict[str, Any]) -> Images:
    """The two test images, built on the stack's builder and pushed to its registry."""
    client = docker.DockerClient(base_url=stack["build_docker_url"], version="1.41", timeout=120)
    registry = stack["registry_host"]
    return Images(
        marker=build_and_push(client, f"{registry}/emulator-test-marker", MARKER_DOCKERFILE),
        silent=build_and_push(client, f"{registry}/emulator-test-silent", SILENT_DOCKERFILE),
    )


@pytest.fixture(scope="session")
def grpc_roots(stack: dict[str, Any]) -> str:
    """Trust the stack's CA for gRPC: the only setting a default-transport client needs (read once)."""
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = stack["cloud_run_grpc_ca"]
    return str(stack["cloud_run_grpc_ca"])


@pytest.fixture(scope="session", params=["rest", "grpc"])
def transport(request: pytest.FixtureRequest, grpc_roots: str) -> str:
    """The client transport of this run of the suite."""
    return str(request.param)


@pytest.fixture(scope="session")
def emulator(
    stack: dict[str, Any], transport: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulator]:
    """One emulator shared by the API tests of one transport (each test uses its own service names)."""
    running = launch(stack, tmp_path_factory.mktemp(f"emulator-state-{transport}"), transport)
    try:
        yield running
    finally:
        running.stop()
        running.remove_containers()


@pytest.fixture
def fresh_emulator(stack: dict[str, Any], transport: str, tmp_path: Path) -> Iterator[Emulator]:
    """An emulator of the test's own, not started yet (for restarts and start-up settings)."""
    running = Emulator(
        docker_url=stack["run_docker_url"],
        state_dir=tmp_path,
        tls_dir=Path(stack["cloud_run_grpc_ca"]).parent,
        transport=transport,
    )
    try:
        yield running
    finally:
        running.stop()
        running.remove_containers()


@pytest.fixture
def rest_only(transport: str) -> None:
    """For checks of REST's own wire format (JSON bodies, query strings): gRPC has no such input."""
    if transport != "rest":
        pytest.skip("REST wire format only: a gRPC request cannot carry it")
