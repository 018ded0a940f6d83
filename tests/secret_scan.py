"""The secrets a local stack holds, read from its own files, and a scanner that finds them in any text.

``collect_secrets(home)`` reads every secret of the stack at ``home`` (``$FAYE_HOME``) from the files the
stack itself writes, so a secret added to the stack is scanned for without editing a list here:

* ``secrets.json``: every value (the Airflow password, the JWT secret, the api-server's secret key, the
  fernet key, the sample service's database password, and whatever is added later);
* ``airflow/passwords.json``: the simple auth manager's passwords;
* ``env.sh`` (what every Airflow process gets): each ``AIRFLOW_CONN_*`` connection's password and its
  extras whose name says secret/token/password/key (registry credentials, tokens), each setting whose
  name does (``AIRFLOW__CORE__FERNET_KEY``, ``AIRFLOW__API_AUTH__JWT_SECRET``, ...), ``AIRFLOW_VAR_*``
  values, and the password of any URL (``FAYE_DATABASE_URL``, the Celery broker);
* ``airflow/airflow.cfg``: the secrets Airflow generated there itself (``[api] secret_key``,
  ``[api_auth] jwt_secret``, unused while the environment overrides them, still secrets);
* every PEM private key under ``home`` (the stack's CA and the emulator's gRPC key).

A hit names the place and the secret's source (``secrets.json:hello_db_password``), never the value:
a failing test's own output must not become the leak.
"""

from __future__ import annotations

import configparser
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from faye_testing import env_from_sh

#: Shorter values are not scanned for (they would match by chance); ``collect_secrets`` reports them.
MIN_LENGTH = 8
SECRET_NAME = re.compile(r"password|passwd|secret|token|fernet|private|credential|api_?key|keyfile", re.I)
#: Setting names that hold where a secret is, not the secret (``..._PASSWORDS_FILE``, ``..._CMD``).
NOT_A_VALUE = re.compile(r"_(FILE|PATH|CMD|DIR|FOLDER)$", re.I)
#: Folders under ``$FAYE_HOME`` never walked: container storage and image blobs (binary, huge).
SKIPPED_DIRS = ("podman", "registry/data")
PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)


@dataclass
class Secret:
    """One secret value and every place the stack keeps it (``file:key``)."""

    value: str = field(repr=False)  # a failing assert prints the Scan: never the values
    sources: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        more = f" (+{len(self.sources) - 1} more)" if len(self.sources) > 1 else ""
        return f"{self.sources[0]}{more}"

    def needles(self) -> set[str]:
        """The forms the value is looked for in: as is, JSON-escaped, URL-quoted; a multi-line value
        (a PEM key) by each of its body lines, so it is found however its line ends were written."""
        lines = [line.strip() for line in self.value.splitlines()]
        if len(lines) > 1:
            return {line for line in lines if len(line) >= 16 and not line.startswith("-----")}
        forms = {self.value, json.dumps(self.value)[1:-1], quote(self.value, safe="")}
        return {f for f in forms if len(f) >= MIN_LENGTH}


def _url_password(value: str) -> str | None:
    if "://" not in value:
        return None
    try:
        return urlsplit(value).password
    except ValueError:
        return None


def _secret_fields(data: Any, prefix: str) -> Iterator[tuple[str, str]]:
    """(path, value) of every string under a key whose name says secret, in nested dicts."""
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}"
            if isinstance(value, str) and SECRET_NAME.search(str(key)) and not NOT_A_VALUE.search(str(key)):
                yield path, value
            elif isinstance(value, str) and (password := _url_password(value)):
                yield f"{path} (URL password)", password
            else:
                yield from _secret_fields(value, path)


def _from_connection(name: str, raw: str) -> Iterator[tuple[str, str]]:
    try:
        conn = json.loads(raw)
    except ValueError:  # the URI form
        if password := _url_password(raw):
            yield f"env.sh:{name} password", password
        return
    if not isinstance(conn, dict):
        return
    extra = conn.get("extra")
    if isinstance(extra, str):
        try:
            conn = {**conn, "extra": json.loads(extra)}
        except ValueError:
            pass
    for path, value in _secret_fields(conn, ""):
        yield f"env.sh:{name}{path}", value


def _from_env_sh(path: Path) -> Iterator[tuple[str, str]]:
    for name, value in env_from_sh(path).items():
        if name.startswith("AIRFLOW_CONN_"):
            yield from _from_connection(name, value)
        elif name.startswith("AIRFLOW_VAR_") or (SECRET_NAME.search(name) and not NOT_A_VALUE.search(name)):
            yield f"env.sh:{name}", value
        elif password := _url_password(value):
            yield f"env.sh:{name} (URL password)", password


def _from_airflow_cfg(path: Path) -> Iterator[tuple[str, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    for section in parser.sections():
        for key, value in parser.items(section, raw=True):
            if key in ("secret_key", "jwt_secret", "fernet_key") or key.endswith("password"):
                yield f"airflow.cfg:[{section}] {key}", value
            elif password := _url_password(value):
                yield f"airflow.cfg:[{section}] {key} (URL password)", password


def stack_files(home: Path) -> Iterator[Path]:
    """Every file under ``home`` except container storage and image blobs (``SKIPPED_DIRS``)."""
    skipped = {home / d for d in SKIPPED_DIRS}
    for root, dirs, files in os.walk(home):
        dirs[:] = [d for d in dirs if Path(root) / d not in skipped]
        for name in files:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _private_keys(home: Path) -> Iterator[tuple[str, str]]:
    for path in stack_files(home):
        if path.suffix != ".pem" and "key" not in path.name:
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for match in PEM_KEY.finditer(text):
            yield f"{path.relative_to(home)}", match.group(0)


def collect_secrets(home: Path) -> tuple[list[Secret], list[str]]:
    """Every secret the stack at ``home`` holds, one per value; and the sources of values too short to
    scan for (``MIN_LENGTH``), which the caller should treat as a failure of its own."""
    found: list[tuple[str, str]] = []
    for name, path in (
        ("secrets.json", home / "secrets.json"),
        ("passwords.json", home / "airflow" / "passwords.json"),
    ):
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            continue
        found += [(f"{name}:{k}", v) for k, v in data.items() if isinstance(v, str)]
    if (home / "env.sh").exists():
        found += _from_env_sh(home / "env.sh")
    if (home / "airflow" / "airflow.cfg").exists():
        found += _from_airflow_cfg(home / "airflow" / "airflow.cfg")
    found += _private_keys(home)
    by_value: dict[str, Secret] = {}
    too_short = []
    for source, value in found:
        if not value:
            continue
        if len(value) < MIN_LENGTH:
            too_short.append(source)
            continue
        by_value.setdefault(value, Secret(value)).sources.append(source)
    return list(by_value.values()), too_short


def secret_destinations(home: Path, catalogue: Mapping[str, Any]) -> set[tuple[str, str]]:
    """``(variable, value)`` of every catalogue ``secret_env`` entry resolvable from the stack's
    connections and variables (``env.sh``): the one place each such value belongs is the environment of
    its service's revisions (docs/deploy.md, Secrets)."""
    from faye_plugin.configs import parse_secret_ref

    env = env_from_sh(home / "env.sh")
    out = set()
    for service in (catalogue.get("services") or {}).values():
        for name, raw in (service.get("secret_env") or {}).items():
            ref = parse_secret_ref(name, raw)
            if ref.kind == "var":
                value = env.get(f"AIRFLOW_VAR_{ref.key.upper()}")
            else:
                conn = json.loads(env.get(f"AIRFLOW_CONN_{ref.key.upper()}", "{}"))
                extra = conn.get("extra") or {}
                extra = json.loads(extra) if isinstance(extra, str) else extra
                value = conn.get(ref.field, extra.get(ref.field))
            if isinstance(value, str) and value:
                out.add((name, value))
    return out


DESTINATION = "<secret_env value, where it belongs>"


def redact_destinations(data: Any, destinations: Iterable[tuple[str, str]], parent: str = "") -> Any:
    """``data`` with the value of each env entry ``{"name": N, "value": V}`` (in a list under a key
    ``env``) replaced when ``(N, V)`` is a destination; the same value anywhere else stays visible."""
    allowed = set(destinations)
    if isinstance(data, dict):
        if parent == "env" and (data.get("name"), data.get("value")) in allowed:
            return {**data, "value": DESTINATION}
        return {k: redact_destinations(v, allowed, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact_destinations(v, allowed, parent) for v in data]
    return data


@dataclass
class Scan:
    """Look for ``secrets`` in everything handed to it; ``hits`` name the place and the secret."""

    secrets: Sequence[Secret]
    hits: list[str] = field(default_factory=list)
    scanned: int = 0  # pieces of text looked at (a log, an XCom value, a file, a command's output)
    nbytes: int = 0

    def found(self, text: str, allowed: Iterable[str] = ()) -> list[Secret]:
        """The secrets whose value appears in ``text`` (values in ``allowed`` are not looked for)."""
        skip = set(allowed)
        return [s for s in self.secrets if s.value not in skip and any(n in text for n in s.needles())]

    def text(self, place: str, text: str, allowed: Iterable[str] = ()) -> None:
        self.scanned += 1
        self.nbytes += len(text)
        self.hits += [f"{place}: holds {s.name}" for s in self.found(text, allowed)]

    def data(self, place: str, data: Any, destinations: Iterable[tuple[str, str]] = ()) -> None:
        """Scan a JSON-able value (after ``redact_destinations``), compact and unescaped."""
        self.text(place, json.dumps(redact_destinations(data, destinations), ensure_ascii=False, default=str))

    def file(self, place: str, path: Path) -> None:
        self.text(place, path.read_bytes().decode("utf-8", errors="replace"))

    def tree(self, place: str, root: Path) -> None:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.file(f"{place}/{path.relative_to(root)}", path)

    def report(self) -> str:
        return f"{len(self.hits)} hit(s) in {self.scanned} pieces ({self.nbytes} characters):\n" + "\n".join(
            self.hits
        )
