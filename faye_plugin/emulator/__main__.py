"""Run the Cloud Run Admin API v2 emulator: `python -m faye_plugin.emulator --port P --state-dir D ...`."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import uvicorn

from faye_plugin.emulator import grpc_api
from faye_plugin.emulator.app import create_app
from faye_plugin.emulator.engine import Engine
from faye_plugin.emulator.faults import FaultTable
from faye_plugin.emulator.limits import Limits
from faye_plugin.emulator.resources import Naming
from faye_plugin.emulator.runtime import Runtime
from faye_plugin.emulator.store import Store


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, load the state folder and serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m faye_plugin.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="API and front door port")
    parser.add_argument("--state-dir", type=Path, required=True, help="where cloud-run.json is kept")
    parser.add_argument(
        "--docker-url",
        default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
        help="Docker Engine API that runs the revisions' containers",
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=60.0, help="seconds a container has to listen on $PORT"
    )
    parser.add_argument("--project", default="local", help="project whose services get short hostnames")
    parser.add_argument("--region", default="europe-west1", help="region whose services get short hostnames")
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=0,
        help="also serve the API over gRPC (TLS) on this port (0: no gRPC)",
    )
    parser.add_argument("--tls-dir", type=Path, help="folder with server.pem and server-key.pem for gRPC")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    if args.grpc_port and args.tls_dir is None:
        parser.error("--grpc-port needs --tls-dir")

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    state_dir = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(state_dir)
    store.load()
    faults = FaultTable()
    faults.load_env(os.environ.get("FAYE_EMULATOR_FAULTS"))
    naming = Naming(port=args.port, project=args.project, region=args.region)
    engine = Engine(store, naming, Limits.from_env())
    runtime = Runtime(args.docker_url, str(state_dir), args.ready_timeout, engine.revision_result)
    engine.runtime = runtime
    app = create_app(engine, faults, runtime)
    grpc_server = None
    if args.grpc_port:
        grpc_server = grpc_api.serve(engine, faults, args.host, args.grpc_port, args.tls_dir)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
