"""Previews on a Cloud Run service, as pure functions over ``run_v2.Service`` objects (no I/O).

This is where Cloud Run correctness lives: its naming limits, the traffic rewrite of a no-traffic
preview deploy and tag removal. Everything here takes a service and returns a *new* one; nothing is
mutated in place, so a caller can diff, retry, or throw a rewrite away. The ``faye.dev/previews``
annotation (who holds which tag and slot until when) belongs to :mod:`faye_plugin.preview_state`.

The rewrite mirrors what ``gcloud run deploy --tag pr-N --no-traffic`` does, in one PATCH:
the new revision is named by the caller (``template.revision``), any ``LATEST`` traffic target is
pinned to the revision serving now (so the new one gets 0%), the tag is moved off any other target,
targets left with neither percent nor tag are dropped, and the tag is added on the new revision.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from google.cloud import run_v2

from faye_plugin.exceptions import CloudRunLimitError
from faye_plugin.naming import tag_of

MAX_TAG_PLUS_SERVICE = 46  # "Combined traffic tag and service name cannot exceed 46 characters"
MIN_TAG_LENGTH = 3  # "revision tags must contain at least three characters"
MAX_SERVICE_NAME = 49  # service ids "must contain fewer than 50 characters"
MAX_REVISION_NAME = 63  # revision names "must be less than 64 characters"

DNS_LABEL_RE = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")
SUFFIX_RE = re.compile(r"^[a-z0-9]+$")

LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def short_name(resource_name: str) -> str:
    """Return the last segment of a resource name (``projects/p/.../revisions/x`` -> ``x``)."""
    return resource_name.rsplit("/", 1)[-1]


def service_path(project: str, region: str, service: str) -> str:
    """Return the full resource name of a service."""
    return f"projects/{project}/locations/{region}/services/{service}"


def preview_tag(pr: int) -> str:
    """Return the Cloud Run traffic tag of pull request ``pr`` (``pr-<N>``)."""
    if isinstance(pr, bool) or not isinstance(pr, int) or pr < 1:
        raise CloudRunLimitError(f"a pull request number is a positive integer, got {pr!r}")
    return tag_of(pr)


def check_service_name(service_name: str) -> None:
    """Raise CloudRunLimitError unless ``service_name`` is a valid Cloud Run service id."""
    name = short_name(service_name)
    if len(name) > MAX_SERVICE_NAME:
        raise CloudRunLimitError(
            f"Cloud Run service name {name!r} has {len(name)} characters; the limit is {MAX_SERVICE_NAME}"
        )
    if not DNS_LABEL_RE.match(name):
        raise CloudRunLimitError(
            f"Cloud Run service name {name!r} must be lowercase letters, digits and hyphens, "
            "begin with a letter and not end with a hyphen"
        )


def check_tag_limits(tag: str, service_name: str) -> None:
    """Raise CloudRunLimitError, naming the limit, if ``tag`` on ``service_name`` breaks one of Cloud Run's.

    Limits: the tag is a lowercase DNS label (letters, digits, hyphens; begins with a letter, does not
    end with a hyphen), has at least 3 characters, and tag plus service name are at most 46 characters
    (the tag URL is ``https://<tag>---<service>-<hash>-<region>.a.run.app``).
    ``service_name`` may be a short name or a full resource name.
    """
    name = short_name(service_name)
    if len(tag) < MIN_TAG_LENGTH:
        raise CloudRunLimitError(
            f"Cloud Run tag {tag!r} is too short: tags need at least {MIN_TAG_LENGTH} characters"
        )
    if not DNS_LABEL_RE.match(tag):
        raise CloudRunLimitError(
            f"Cloud Run tag {tag!r} is not a lowercase DNS label: use a-z, 0-9 and '-', "
            "begin with a letter and do not end with '-'"
        )
    if len(tag) + len(name) > MAX_TAG_PLUS_SERVICE:
        raise CloudRunLimitError(
            f"Cloud Run tag {tag!r} ({len(tag)} chars) plus service name {name!r} ({len(name)} chars) "
            f"is {len(tag) + len(name)} characters; Cloud Run allows at most {MAX_TAG_PLUS_SERVICE}"
        )


def revision_name(service_name: str, pr: int, git_sha: str, attempt_suffix: str = "") -> str:
    """Return the deterministic revision name of a preview: ``<service>-pr-<N>-<sha7>[-<suffix>]``.

    Cloud Run wants revision names prefixed by ``<service>-`` and shorter than 64 characters; a name
    that cannot fit raises CloudRunLimitError. The same (service, pr, sha) always gives the same name,
    so a repeated deploy of the same commit is recognisable; pass ``attempt_suffix`` (lowercase
    letters and digits) when the same commit must be deployed again with a different template.
    """
    name = short_name(service_name)
    check_service_name(name)
    sha = git_sha.lower()
    if not SHA_RE.match(sha):
        raise CloudRunLimitError(f"git sha {git_sha!r} is not 7 to 40 hexadecimal digits")
    if attempt_suffix and not SUFFIX_RE.match(attempt_suffix):
        raise CloudRunLimitError(f"revision suffix {attempt_suffix!r} must be lowercase letters and digits")
    revision = f"{name}-{preview_tag(pr)}-{sha[:7]}"
    if attempt_suffix:
        revision = f"{revision}-{attempt_suffix}"
    if len(revision) > MAX_REVISION_NAME:
        raise CloudRunLimitError(
            f"Cloud Run revision name {revision!r} has {len(revision)} characters; "
            f"the limit is {MAX_REVISION_NAME}"
        )
    return revision


LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")


def check_labels(labels: dict[str, str]) -> None:
    """Raise CloudRunLimitError unless every label is a valid Google Cloud label (revision labels)."""
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(key):
            raise CloudRunLimitError(
                f"label key {key!r} must be 1-63 lowercase letters, digits, '_' or '-', "
                "starting with a letter"
            )
        if not LABEL_VALUE_RE.match(value):
            raise CloudRunLimitError(
                f"label {key}={value!r}: values are at most 63 lowercase letters, digits, '_' or '-'"
            )


# --- traffic ---------------------------------------------------------------------------------------


def _copy(service: run_v2.Service) -> run_v2.Service:
    return run_v2.Service.deserialize(run_v2.Service.serialize(service))


def _target(
    type_: run_v2.TrafficTargetAllocationType | int, revision: str = "", percent: int = 0, tag: str = ""
) -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(type_=type_, revision=revision, percent=percent, tag=tag)


def _put_tag(targets: list[run_v2.TrafficTarget], revision: str, tag: str) -> None:
    """Put ``tag`` on an untagged target of ``revision``, else on a new 0 % target of it."""
    for t in targets:
        if t.type_ == REVISION and t.revision == revision and not t.tag:
            t.tag = tag
            return
    targets.append(_target(REVISION, revision, 0, tag))


def _current_targets(service: run_v2.Service) -> list[run_v2.TrafficTarget]:
    """The service's traffic spec; an existing service with an empty spec sends 100% to LATEST."""
    targets = [_target(t.type_, t.revision, t.percent, t.tag) for t in service.traffic]
    if not targets and service.latest_ready_revision:
        targets = [_target(LATEST, percent=100)]
    return targets


def is_new_service(service: run_v2.Service) -> bool:
    """Return True if the service has no ready revision (it does not exist yet, or never served)."""
    return not service.latest_ready_revision


def with_preview_revision(
    service: run_v2.Service,
    *,
    revision: str,
    image: str,
    env: dict[str, str],
    labels: dict[str, str],
    tag: str,
    port: int | None = None,
) -> run_v2.Service:
    """Return a copy of ``service`` that deploys ``revision`` as a tagged preview with no traffic.

    The template is the current one with: the revision name, the first container's image, the given
    env entries (same-named entries replaced, others, e.g. secret references, kept), the given labels
    (previous ``faye-*`` labels dropped), and the container port if given.

    Traffic keeps every percent target; a ``LATEST`` target is pinned to the revision ready now, so the
    preview gets 0%. The tag is moved off any other target, and targets left with neither percent nor
    tag are dropped. The preview is never given a percent, with one exception:

    A service with no ready revision (``get_service`` returned None and the caller passes
    ``run_v2.Service(name=...)``, or its only revisions never became ready) cannot take a no-traffic
    deploy: Cloud Run refuses ``--no-traffic`` on service creation, and there is nothing else to serve.
    Then the preview revision serves 100% *and* carries the tag; the caller patches with
    ``allow_missing=True`` so the same PATCH creates the service.
    """
    if not service.name:
        raise ValueError("the service needs its resource name (projects/<p>/locations/<r>/services/<s>)")
    name = short_name(service.name)
    check_tag_limits(tag, name)
    if not revision.startswith(f"{name}-") or len(revision) > MAX_REVISION_NAME:
        raise CloudRunLimitError(
            f"Cloud Run revision {revision!r} must start with '{name}-' and have at most "
            f"{MAX_REVISION_NAME} characters"
        )
    check_labels(labels)
    new = _copy(service)
    template = new.template
    template.revision = revision
    if not template.containers:
        template.containers.append(run_v2.Container())
    container = template.containers[0]
    container.image = image
    kept_env = [e for e in container.env if e.name not in env]
    container.env = kept_env + [run_v2.EnvVar(name=k, value=v) for k, v in env.items()]
    if port is not None:
        container.ports = [run_v2.ContainerPort(container_port=port)]
    kept_labels = {k: v for k, v in template.labels.items() if not k.startswith("faye-")}
    template.labels = {**kept_labels, **labels}

    if is_new_service(service):
        new.traffic = [_target(REVISION, revision, 100, tag)]
        return new

    pinned_to = short_name(service.latest_ready_revision)
    targets: list[run_v2.TrafficTarget] = []
    for current in _current_targets(service):
        pinned = current.type_ == LATEST
        t = _target(
            REVISION if pinned else current.type_,
            pinned_to if pinned else current.revision,
            current.percent,
            "" if current.tag == tag else current.tag,
        )
        if t.percent or t.tag:
            targets.append(t)
    _put_tag(targets, revision, tag)
    new.traffic = targets
    return new


def without_tag(service: run_v2.Service, tag: str) -> run_v2.Service:
    """Return a copy of ``service`` whose traffic no longer carries ``tag``.

    Targets left with neither percent nor tag are dropped; percents are never changed, so removing a
    tag never moves production traffic.
    """
    return without_tags(service, {tag})


def without_tags(service: run_v2.Service, removed: Collection[str]) -> run_v2.Service:
    """Return a copy of ``service`` whose traffic carries none of the tags ``removed`` (one write)."""
    new = _copy(service)
    targets: list[run_v2.TrafficTarget] = []
    for t in service.traffic:
        kept = _target(t.type_, t.revision, t.percent, "" if t.tag in removed else t.tag)
        if kept.percent or kept.tag:
            targets.append(kept)
    new.traffic = targets
    return new


def with_tag_on(service: run_v2.Service, tag: str, revision: str | None) -> run_v2.Service:
    """Return a copy of ``service`` whose traffic spec carries ``tag`` on ``revision``, or nowhere.

    Percents are never changed. Used to put a tag back on the revision Cloud Run still serves it from
    when the revision a deploy moved it to never became ready.
    """
    new = without_tag(service, tag)
    if not revision:
        return new
    targets = [_target(t.type_, t.revision, t.percent, t.tag) for t in new.traffic]
    _put_tag(targets, revision, tag)
    new.traffic = targets
    return new


def served_revision(service: run_v2.Service, tag: str) -> str | None:
    """Return the revision Cloud Run really serves ``tag`` from (``trafficStatuses`` only), or None.

    After a failed deploy the spec may name a revision that never became ready; the status does not.
    """
    for status in service.traffic_statuses:
        if status.tag == tag and status.revision:
            return str(status.revision)
    return None


def tag_uri(service: run_v2.Service, tag: str) -> str | None:
    """Return the URL Cloud Run serves ``tag`` at (from ``trafficStatuses``; never constructed)."""
    for status in service.traffic_statuses:
        if status.tag == tag and status.uri:
            return str(status.uri)
    return None


def tag_revision(service: run_v2.Service, tag: str) -> str | None:
    """Return the short name of the revision ``tag`` points at (the status, else the spec), or None."""
    for targets in (service.traffic_statuses, service.traffic):
        for t in targets:
            if t.tag != tag:
                continue
            if t.revision:
                return str(t.revision)
            if t.type_ == LATEST and service.latest_ready_revision:
                return short_name(service.latest_ready_revision)
    return None


def tags(service: run_v2.Service) -> set[str]:
    """Return every tag in the service's traffic (spec and status)."""
    found = {t.tag for t in service.traffic if t.tag}
    found |= {t.tag for t in service.traffic_statuses if t.tag}
    return found
