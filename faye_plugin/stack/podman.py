"""Docker Engine APIs without a Docker engine: one podman service per host, each fully isolated.

Every host (``build``, ``run``, ``test-1``, ...) gets its own folder under ``$FAYE_HOME/podman/<host>/``
with its own containers.conf, storage.conf and registries.conf, its own graphroot/runroot and its own
libpod tmp/static folders, so several hosts and several stacks on one machine never share state.
runc + cgroupfs + host network (what works on these machines, see the notes). A host named in
``FAYE_DOCKER_TCP`` listens on a loopback TCP port instead of a unix socket (the path a remote
Docker host takes: ``tcp://`` in the catalogue). The locally made
busybox base image ``localhost/faye-base:latest`` is imported into each host through its API.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path

from faye_plugin.exceptions import StackError
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.processes import ProcessSpec

BASE_IMAGE = "localhost/faye-base:latest"
BUSYBOX = Path("/bin/busybox")
# applets linked in the base image (busybox-static provides them all)
APPLETS = (
    "sh", "ash", "cat", "echo", "env", "ls", "mkdir", "printf", "sleep", "test", "true", "false",
    "wget", "grep", "sed", "httpd", "date", "hostname", "id", "ps", "rm", "cp", "mv", "tr", "head",
    "tail", "wc", "uname", "nc", "timeout", "expr", "seq", "touch", "chmod", "tee", "awk", "sort",
)  # fmt: skip


def host_dir(cfg: StackConfig, host: str) -> Path:
    return cfg.podman_dir / host


def write_config(cfg: StackConfig, host: str) -> dict[str, str]:
    """Write the host's podman config files; return the environment that points podman at them."""
    root = host_dir(cfg, host)
    for sub in ("graph", "run", "tmp", "static", "volumes", "netconf"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "containers.conf").write_text(
        "[containers]\n"
        "default_ulimits = []\n"
        'netns = "host"\n'
        'log_driver = "k8s-file"\n'
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'runtime = "runc"\n'
        'events_logger = "file"\n'
        # Not the default shm locks: every root podman shares /dev/shm/libpod_lock, and hosts started
        # at once on a fresh machine race to create it ("failed to create 2048 locks ... file exists").
        # File locks live under each host's own tmp_dir.
        'lock_type = "file"\n'
        f'events_logfile_path = "{root}/events.log"\n'
        f'tmp_dir = "{root}/tmp"\n'
        f'static_dir = "{root}/static"\n'
        f'volume_path = "{root}/volumes"\n'
        "[network]\n"
        f'network_config_dir = "{root}/netconf"\n'
    )
    (root / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{root}/run"\ngraphroot = "{root}/graph"\n'
    )
    (root / "registries.conf").write_text(
        "unqualified-search-registries = []\n"
        "[[registry]]\n"
        f'location = "{cfg.registry_host}"\n'
        "insecure = true\n"
    )
    return {
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
        "TMPDIR": str(root / "tmp"),
    }


def service_spec(cfg: StackConfig, host: str, base_env: dict[str, str]) -> ProcessSpec:
    podman = shutil.which("podman") or "/usr/bin/podman"
    env = {**base_env, **write_config(cfg, host)}
    return ProcessSpec(
        name=f"podman-{host}",
        argv=[podman, "system", "service", "--time=0", cfg.docker_url(host)],
        env=env,
        cwd=host_dir(cfg, host),
        log=cfg.log_dir / f"podman-{host}.log",
    )


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


#: Where a Docker API listens: a unix socket file, or (host, port) over TCP.
Endpoint = Path | tuple[str, int]


def api(
    sock: Endpoint, method: str, path: str, body: bytes | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """Call the Docker Engine API on ``sock`` (a socket file or a TCP address); return (status, body)."""
    conn: http.client.HTTPConnection
    if isinstance(sock, tuple):
        conn = http.client.HTTPConnection(sock[0], sock[1], timeout=timeout)
    else:
        conn = _UnixHTTPConnection(sock, timeout)
    try:
        headers = {"Content-Type": "application/x-tar"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def ping(sock: Endpoint) -> bool:
    """Return True when the Docker API on ``sock`` answers ``/_ping`` with OK."""
    try:
        status, body = api(sock, "GET", "/_ping", timeout=2.0)
    except OSError:
        return False
    return status == 200 and body.strip() == b"OK"


def base_image_tar() -> bytes:
    """Return a rootfs tarball: busybox-static and its applets, plus /tmp and /etc/passwd."""
    if not BUSYBOX.exists():
        raise StackError(f"{BUSYBOX} is missing: install the Debian package busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder in ("bin", "tmp", "etc", "www"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        for name, text in (("etc/passwd", "root:x:0:0:root:/:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def has_image(sock: Endpoint, image: str = BASE_IMAGE) -> bool:
    status, _ = api(sock, "GET", f"/images/{image}/json")
    return status == 200


def ensure_base_image(sock: Endpoint, tar: bytes | None = None) -> bool:
    """Import the base image into the host on ``sock`` unless it is there; return True if imported."""
    if has_image(sock):
        return False
    repo, tag = BASE_IMAGE.rsplit(":", 1)
    changes = json.dumps("ENV PATH=/bin")
    query = f"/images/create?fromSrc=-&repo={repo}&tag={tag}&changes={changes.strip(chr(34))}"
    status, body = api(sock, "POST", query.replace(" ", "%20"), body=tar or base_image_tar(), timeout=60.0)
    if status not in (200, 201) or not has_image(sock):
        raise StackError(f"importing {BASE_IMAGE} into {sock} failed: HTTP {status} {body[:300]!r}")
    return True


def tidy_socket(cfg: StackConfig, host: str) -> None:
    """Remove a stale socket file left by a service that is gone (podman refuses to bind over it)."""
    sock = cfg.docker_socket(host)
    if cfg.docker_port(host) is None and sock.exists() and not ping(sock):
        os.unlink(sock)


def remove_containers(sock: Endpoint) -> int:
    """Force-remove every container of the host on ``sock``; return how many there were.

    Containers are not children of the podman service (each has a ``conmon`` in a session of its
    own), so stopping the service alone would leave them running.
    """
    try:
        status, body = api(sock, "GET", "/containers/json?all=true", timeout=10.0)
    except OSError:
        return 0
    if status != 200:
        return 0
    boxes = json.loads(body)
    for box in boxes:
        api(sock, "DELETE", f"/containers/{box['Id']}?force=true&v=true", timeout=60.0)
    return len(boxes)


def conmon_pids(cfg: StackConfig) -> list[int]:
    """Return the pids of ``conmon`` processes (container monitors) of this stack's hosts."""
    marker = f"{cfg.podman_dir}/".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        first = raw.split(b"\0", 1)[0]
        if first.endswith(b"conmon") and marker in raw:
            out.append(int(entry))
    return out


def remove_containers_offline(cfg: StackConfig, host: str) -> None:
    """Remove the host's containers with the podman CLI (for when its service is gone)."""
    podman = shutil.which("podman") or "/usr/bin/podman"
    env = {**os.environ, **write_config(cfg, host)}
    subprocess.run(
        [podman, "rm", "--all", "--force", "--time", "0"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
