"""A real registry on loopback: Debian's docker-registry (CNCF distribution 2.8) with local storage."""

from __future__ import annotations

import shutil

from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.processes import ProcessSpec


def write_config(cfg: StackConfig) -> str:
    """Write ``registry/config.yml`` (plain HTTP on 127.0.0.1, deletes enabled); return its path."""
    root = cfg.home / "registry"
    (root / "data").mkdir(parents=True, exist_ok=True)
    path = root / "config.yml"
    path.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        f"http:\n  addr: 127.0.0.1:{cfg.ports['registry']}\n"
    )
    return str(path)


def service_spec(cfg: StackConfig, base_env: dict[str, str]) -> ProcessSpec:
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    return ProcessSpec(
        name="registry",
        argv=[binary, "serve", write_config(cfg)],
        env=base_env,
        cwd=cfg.home / "registry",
        log=cfg.log_dir / "registry.log",
    )


def health_url(cfg: StackConfig) -> str:
    return f"{cfg.url('registry')}/v2/"
