"""Fixtures for the Cloud Run emulator tests: test images in the stack's registry, emulator processes.

Every emulator here is a real `python -m faye_plugin.emulator` subprocess on a free port with its own
temporary state folder, running revisions on the stack's `run` Docker host. Tests talk to it only
through the official `google-cloud-run` client (or plain HTTP where an error body is checked).
"""

from __future__ import annotations

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
def emulator(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One emulator shared by the API tests (each test uses its own service names)."""
    running = launch(stack, tmp_path_factory.mktemp("emulator-state"))
    try:
        yield running
    finally:
        running.stop()
        running.remove_containers()


@pytest.fixture
def fresh_emulator(stack: dict[str, Any], tmp_path: Path) -> Iterator[Emulator]:
    """An emulator of the test's own (for restarts and start-up settings)."""
    running = Emulator(docker_url=stack["run_docker_url"], state_dir=tmp_path)
    try:
        yield running
    finally:
        running.stop()
        running.remove_containers()
