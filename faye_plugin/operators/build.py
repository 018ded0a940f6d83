"""Build a service's image at a commit on the builder host, then push it to the registry.

Both talk to the builder's Docker Engine API through the docker provider's ``DockerHook`` (the
catalogue's ``builder.docker_url`` with its TLS settings); the builder pushes to the registry itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from faye_plugin.catalogue import DockerHost, ServiceSpec, load_catalogue
from faye_plugin.exceptions import BuildFailedError, CatalogueError, RegistryError
from faye_plugin.hooks.git import GitSourceHook

if TYPE_CHECKING:
    from airflow.providers.docker.hooks.docker import DockerHook
    from airflow.sdk import Context

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def builder_hook(builder: DockerHost | None, timeout: int = 1800) -> DockerHook:
    """Return the docker provider's hook for the catalogue's builder (TLS for ``tcp://`` hosts)."""
    from airflow.providers.docker.hooks.docker import DockerHook

    if builder is None:
        raise CatalogueError("the catalogue declares no builder: add builder.docker_url")
    tls = DockerHook.construct_tls_config(
        ca_cert=builder.tls_ca_cert,
        client_cert=builder.tls_client_cert,
        client_key=builder.tls_client_key,
        verify=builder.tls_verify,
    )
    return DockerHook(
        docker_conn_id=None, base_url=builder.docker_url, version="auto", tls=tls, timeout=timeout
    )


def stream_build(items: Iterable[dict[str, Any]], log: logging.Logger | Any) -> str:
    """Log each line of a decoded build stream as it arrives; return the image id.

    Raise ``BuildFailedError`` carrying the builder's own message on an ``error`` item.
    """
    image_id = ""
    for item in items:
        text = item.get("stream")
        if isinstance(text, str):
            for line in text.splitlines():
                if line.strip():
                    log.info("%s", line)
        if "error" in item:
            detail = item.get("errorDetail") or {}
            message = str(detail.get("message") or item["error"]).strip()
            log.error("build failed: %s", message)
            raise BuildFailedError(message)
        aux = item.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = str(aux["ID"])
    if not image_id:
        raise BuildFailedError("the builder ended the build without an image id")
    return image_id


class BuildImageOperator(BaseOperator):
    """Fetch the service's source at ``git_sha`` and build its image, tagged ``<repo>:<full sha>``.

    Fetch and build are ONE task on purpose: the source is fetched into a temporary directory on the
    worker, and with several workers (Celery) a second task could run on another machine that does not
    have it. The built image lives on the builder host, which every worker reaches by URL, so pushing
    is a task of its own. Build output goes to the task log line by line while the build runs.

    Returns ``{"tag", "repository", "git_sha" (full), "image_id"}``.

    :param service: a service of the catalogue. (templated)
    :param git_sha: the commit, 7 to 40 hex characters. (templated)
    """

    template_fields = ("service", "git_sha")
    ui_color = "#d6eaf8"

    def __init__(self, *, service: str, git_sha: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.git_sha = git_sha

    def execute(self, context: Context) -> dict[str, str]:
        catalogue = load_catalogue()
        spec = catalogue.service(self.service)
        hook = builder_hook(catalogue.builder)
        with TemporaryDirectory(prefix="faye-build-") as tmp:
            git = GitSourceHook(spec.build.git_url)
            workdir = Path(tmp) / "src"
            self.log.info("fetching %s at %s", spec.build.git_url, self.git_sha)
            full_sha = git.fetch(self.git_sha, workdir)
            context_tar = git.archive(workdir, full_sha, spec.build.context, Path(tmp) / "context.tar")
            tag = f"{spec.image}:{full_sha}"
            self.log.info("building %s on %s", tag, catalogue.builder.docker_url if catalogue.builder else "")
            with context_tar.open("rb") as fileobj:
                stream = hook.api_client.build(
                    fileobj=fileobj,
                    custom_context=True,
                    tag=tag,
                    dockerfile=spec.build.dockerfile,
                    buildargs={**spec.build.build_args, "GIT_SHA": full_sha},
                    decode=True,
                    rm=True,
                    forcerm=True,
                )
                image_id = stream_build(stream, self.log)
        self.log.info("built %s (%s)", tag, image_id)
        return {"tag": tag, "repository": spec.image, "git_sha": full_sha, "image_id": image_id}


class PushImageOperator(BaseOperator):
    """Push the image ``build_task_id`` built to the registry; return where it now is, by digest.

    Push progress goes to the task log. The digest the builder reports is checked against the one the
    registry serves for the tag (the registry is the truth the deploy reads).

    Returns ``{"image": "<repo>@sha256:...", "digest": "sha256:...", "tag": "<repo>:<sha>"}``.

    :param service: a service of the catalogue. (templated)
    :param build_task_id: the task whose XCom holds the build result.
    """

    template_fields = ("service", "build_task_id")
    ui_color = "#d6eaf8"

    def __init__(self, *, service: str, build_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.build_task_id = build_task_id

    def execute(self, context: Context) -> dict[str, str]:
        catalogue = load_catalogue()
        spec = catalogue.service(self.service)
        built = context["ti"].xcom_pull(task_ids=self.build_task_id)
        if not isinstance(built, dict) or "tag" not in built:
            raise BuildFailedError(f"no build result in the XCom of {self.build_task_id}")
        repository, sha = str(built["repository"]), str(built["git_sha"])
        hook = builder_hook(catalogue.builder)
        pushed = self._push(hook, spec, repository, sha)
        digest = self._registry_digest(spec, repository, sha)
        if pushed and pushed != digest:
            self.log.warning(
                "the builder reported %s, the registry serves %s: using the registry's", pushed, digest
            )
        result = {"image": f"{repository}@{digest}", "digest": digest, "tag": f"{repository}:{sha}"}
        self.log.info("pushed %s", result["image"])
        return result

    def _push(self, hook: DockerHook, spec: ServiceSpec, repository: str, sha: str) -> str | None:
        auth = self._auth_config(spec)
        digest: str | None = None
        last: dict[str, str] = {}
        for item in hook.api_client.push(repository, tag=sha, stream=True, decode=True, auth_config=auth):
            if "error" in item:
                message = str((item.get("errorDetail") or {}).get("message") or item["error"]).strip()
                raise BuildFailedError(f"push of {repository}:{sha} failed: {message}")
            status = str(item.get("status", ""))
            layer = str(item.get("id", ""))
            if status and last.get(layer) != status:
                last[layer] = status
                self.log.info("%s%s", f"{layer}: " if layer else "", status)
            aux = item.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
            elif "digest:" in status and (found := DIGEST_RE.search(status)):
                digest = found.group(0)
        return digest

    def _auth_config(self, spec: ServiceSpec) -> dict[str, str] | None:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(spec.registry_conn_id)
        if not conn.login:
            return None
        return {"username": conn.login, "password": conn.password or ""}

    def _registry_digest(self, spec: ServiceSpec, repository: str, sha: str) -> str:
        from faye_plugin.hooks.registry import RegistryHook

        digest = RegistryHook(spec.registry_conn_id).get_manifest_digest(repository, sha)
        if not digest:
            raise RegistryError(f"the registry does not serve {repository}:{sha} after the push")
        return digest
