"""Operators that change a preview on Cloud Run: push out its expiry, deploy its revision, remove it.

Each builds its hook in ``execute()`` from the service's catalogue entry. Every service write is a
transition of :mod:`faye_plugin.preview_state`, applied in one read-modify-write with the service's
etag (started again when another writer won the race).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from faye_plugin.catalogue import ServiceSpec, load_catalogue
from faye_plugin.exceptions import CloudRunApiError, FayeError, InvalidRequestError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook
    from faye_plugin.preview_state import Transition

# The Cloud Run client library is imported inside execute(): every task process of the deploy DAG
# parses this module, and most of them never talk to Cloud Run.


def _spec(service: str) -> ServiceSpec:
    return load_catalogue().service(service)


def _hook(spec: ServiceSpec) -> CloudRunPreviewHook:
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook

    return CloudRunPreviewHook(gcp_conn_id=spec.cloud_run.gcp_conn_id)


class ExtendExpiryOperator(BaseOperator):
    """Push out the expiry of a PR's preview to now + ttl, before anything else of the deploy changes.

    The expiry lives in the service's preview state (:mod:`faye_plugin.preview_state`, an annotation:
    no new revision). A PR without a record yet gets one, so a deploy that fails later still leaves an
    expiring record. When the service itself does not exist yet there is nothing to write on: the
    first deploy then creates the service, the tag and the record in one PATCH, so no tag can exist
    without an expiry.

    It also returns ``extended_revision``: the revision the tag ``pr-<N>`` served in the very state
    this write pushed an existing record's expiry on (None when the PR had no record or no tag there).
    ``check_cloud_run`` runs beside this task, so ``should_build`` declares a no-op only when that
    revision is the one ``check_cloud_run`` found: a ``faye_cleanup`` that removed the preview
    between the two shows up here as "no record to extend", and the deploy then re-creates it.

    :param service: the catalogue's service name (templated).
    :param pr: the pull request number (templated).
    :param ttl_hours: hours to live; None: the catalogue's default (templated).
    """

    template_fields: Sequence[str] = ("service", "pr", "ttl_hours")
    ui_color = "#fff3d6"

    def __init__(self, *, service: str, pr: int | str, ttl_hours: int | str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr
        self.ttl_hours = ttl_hours

    def execute(self, context: Context) -> dict[str, Any]:
        from faye_plugin import preview_state
        from faye_plugin.hooks.cloud_run import check_tag_limits, preview_tag, tag_revision
        from faye_plugin.naming import expires_at
        from faye_plugin.previews import ttl_hours

        spec = _spec(str(self.service))
        pr = int(self.pr)
        tag = preview_tag(pr)
        check_tag_limits(tag, spec.cloud_run.service)
        requested = None if self.ttl_hours in (None, "", "None") else int(self.ttl_hours)
        hours = ttl_hours(requested, load_catalogue().defaults)
        expires = expires_at(time.time(), hours)
        target = spec.cloud_run

        found: dict[str, str | None] = {}

        def extend(state: preview_state.PreviewState, current: Any) -> preview_state.Planned | None:
            # Per attempt (a lost etag race calls this again on a fresh read): what the write extends.
            found["revision"] = tag_revision(current, tag) if current is not None and state.get(pr) else None
            return None if current is None else preview_state.Planned(state.extend(pr, expires))

        written, state = preview_state.apply(
            _hook(spec),
            project=target.project,
            region=target.region,
            service=target.service,
            transition=extend,
        )
        recorded = state.get(pr)
        self.log.info(
            "Preview %s of %s expires at %s (%d h)%s",
            tag,
            spec.name,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            hours,
            "" if written is not None else "; the service does not exist yet: the deploy records it",
        )
        return {
            "tag": tag,
            "ttl_hours": hours,
            "expires": recorded.expires if recorded else expires,
            "pinned": bool(recorded and recorded.pinned),
            "service_exists": written is not None,
            "extended_revision": found.get("revision") if written is not None else None,
        }


class DeployPreviewOperator(BaseOperator):
    """Deploy a preview revision under the PR's tag with no production traffic, and wait for it.

    The revision is named ``<service>-pr-<N>-<sha7>`` (``-r2``, ``-r3``... if that name is taken) and
    labelled ``faye-pr``, ``faye-sha``, ``faye-slot``; the same PATCH moves the tag ``pr-<N>`` onto it and
    records sha, slot, revision and expiry in the preview state (one transition, one etag-guarded PATCH;
    it refuses rather than take the slot from another tag's claim). Secrets from
    ``secret_env`` are resolved here, masked, and never returned.

    Returns ``{"service", "pr", "sha", "slot", "tag", "revision", "url", "image", "expires", "operation"}``
    where ``url`` is the tag's URL as Cloud Run reports it.

    :param service: the catalogue's service name (templated).
    :param pr: the pull request number (templated).
    :param git_sha: the commit (templated).
    :param slot: the slot the preview takes (templated).
    :param image: the image to run, or the dict ``check_image``/``push_image`` return (templated).
    :param env: plain environment variables (templated; secrets do not belong here).
    :param expires: the expiry (epoch seconds) ``extend_expiry`` set (templated).
    :param deferrable: wait for the operation in the triggerer; None: ``[faye] deploy_deferrable``.
    :param poll_interval: seconds between operation polls.
    :param defer_after: seconds to poll in the worker before deferring. A short operation (the local
        emulator's) then never defers: a trigger that fires within a second of the deferral can race
        the scheduler's handling of the deferral itself (seen on a loaded machine: the resumed task was
        failed by the late "executor reported success" event), and a round trip through the triggerer
        costs more than it saves for a wait that short.
    """

    template_fields: Sequence[str] = ("service", "pr", "git_sha", "slot", "image", "env", "expires")
    ui_color = "#d6e9ff"

    def __init__(
        self,
        *,
        service: str,
        pr: int | str,
        git_sha: str,
        slot: str,
        image: str | dict[str, Any],
        env: dict[str, str] | None = None,
        expires: int | str | None = None,
        deferrable: bool | None = None,
        poll_interval: float = 1.0,
        defer_after: float = 15.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr
        self.git_sha = git_sha
        self.slot = slot
        self.image = image
        self.env = env
        self.expires = expires
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.defer_after = defer_after

    # --- planning -----------------------------------------------------------------------------------

    def _image(self) -> str:
        image = self.image
        if isinstance(image, dict):
            image = image.get("image") or ""
        if not image or not isinstance(image, str):
            raise FayeError(
                f"no image to deploy (got {self.image!r}): neither check_image nor the build gave one"
            )
        return image

    def _free_revision(self, hook: CloudRunPreviewHook, spec: ServiceSpec, exists: bool) -> str:
        from faye_plugin.hooks.cloud_run import revision_name, short_name

        target = spec.cloud_run
        base = revision_name(target.service, int(self.pr), str(self.git_sha))
        if not exists:
            return base
        taken = {
            short_name(r.name)
            for r in hook.list_revisions(project=target.project, region=target.region, service=target.service)
        }
        if base not in taken:
            return base
        for attempt in range(2, 1000):
            name = revision_name(target.service, int(self.pr), str(self.git_sha), f"r{attempt}")
            if name not in taken:
                return name
        raise FayeError(f"no free revision name for {base}: 1000 deploys of one commit")

    def _plan(
        self,
        hook: CloudRunPreviewHook,
        spec: ServiceSpec,
        secrets: dict[str, str],
        planned: dict[str, Any],
        run_id: str,
    ) -> Transition:
        """The deploy as one preview-state transition: the traffic rewrite and the record, in one PATCH."""
        from google.cloud import run_v2

        from faye_plugin import preview_state
        from faye_plugin.hooks.cloud_run import preview_tag, service_path, with_preview_revision
        from faye_plugin.naming import expires_at
        from faye_plugin.previews import LABEL_PR, LABEL_SHA, LABEL_SLOT, ttl_hours

        target = spec.cloud_run
        pr, sha, slot = int(self.pr), str(self.git_sha), str(self.slot)
        tag = preview_tag(pr)

        def deploy(state: preview_state.PreviewState, current: Any) -> preview_state.Planned:
            revision = self._free_revision(hook, spec, current is not None)
            base = current or run_v2.Service(name=service_path(target.project, target.region, target.service))
            new = with_preview_revision(
                base,
                revision=revision,
                image=self._image(),
                env={**(self.env or {}), **secrets},
                labels={LABEL_PR: str(pr), LABEL_SHA: sha, LABEL_SLOT: slot},
                tag=tag,
                port=spec.port,
            )
            now = time.time()
            expires = int(self.expires) if self.expires not in (None, "", "None") else 0
            if not expires:
                expires = expires_at(now, ttl_hours(None, load_catalogue().defaults))
            planned["revision"] = revision
            recorded = state.record_deploy(
                pr, sha=sha, slot=slot, revision=revision, expires=expires, now=now, run_id=run_id
            )  # refuses (SlotTakenError) rather than drop another tag's claim on the slot
            return preview_state.Planned(recorded, new, update_mask=())

        return deploy

    # --- execution ----------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        from faye_plugin import preview_state
        from faye_plugin.configs import resolve_secrets, secret_refs
        from faye_plugin.hooks.cloud_run import check_tag_limits, preview_tag
        from faye_plugin.settings import deploy_deferrable

        spec = _spec(str(self.service))
        tag = preview_tag(int(self.pr))
        check_tag_limits(tag, spec.cloud_run.service)
        spec.require_slot(str(self.slot))
        secrets = resolve_secrets(secret_refs(spec))
        hook = _hook(spec)
        planned: dict[str, Any] = {}
        target = spec.cloud_run
        operation = preview_state.start_apply(
            hook,
            project=target.project,
            region=target.region,
            service=target.service,
            transition=self._plan(hook, spec, secrets, planned, str(context["run_id"])),
        )
        revision = str(planned["revision"])
        if operation is None:
            raise FayeError(f"the deploy of {revision} wrote nothing")
        self.log.info(
            "Deploying revision %s of %s under tag %s (operation %s)", revision, spec.name, tag, operation
        )
        state = hook.get_operation(operation)
        started = time.monotonic()
        while not state["done"] and time.monotonic() - started < self.defer_after:
            time.sleep(min(self.poll_interval, 0.5))
            state = hook.get_operation(operation)
        if not state["done"]:
            deferrable = deploy_deferrable() if self.deferrable is None else self.deferrable
            if deferrable:
                from faye_plugin.triggers.cloud_run import CloudRunOperationTrigger

                self.defer(
                    trigger=CloudRunOperationTrigger(
                        operation=operation,
                        gcp_conn_id=spec.cloud_run.gcp_conn_id,
                        poll_interval=max(self.poll_interval, 2.0),
                    ),
                    method_name="execute_complete",
                    kwargs={"revision": revision, "operation": operation},
                )
            while not state["done"]:
                time.sleep(self.poll_interval)
                state = hook.get_operation(operation)
        if state["error"]:
            self._deploy_failed(hook, spec, revision, f"operation {operation} failed: {state['error']}")
        return self._result(hook, spec, revision, operation)

    def execute_complete(
        self, context: Context, event: dict[str, Any], revision: str, operation: str
    ) -> dict[str, Any]:
        """Resume after the trigger: fail with its message, or read the service back."""
        spec = _spec(str(self.service))
        hook = _hook(spec)
        if event.get("status") != "success":
            why = f"operation {operation} {event.get('status')}: {event.get('message')}"
            self._deploy_failed(hook, spec, revision, why)
        return self._result(hook, spec, revision, operation)

    def _deploy_failed(self, hook: CloudRunPreviewHook, spec: ServiceSpec, revision: str, why: str) -> None:
        """Undo the half of a deploy whose revision never became ready, then fail with both stories.

        Cloud Run keeps serving the tag from the revision that served it before, but its traffic spec
        names the failed one (and every later write would carry that on). faye puts the tag back on the
        revision Cloud Run serves it from, when that preview still holds this slot's route; otherwise it
        drops the tag and the record's slot claim, so no tag is left without a claim and no claim
        without a route. The record and its expiry stay.
        """
        undone = self._undo(hook, spec, revision)
        raise CloudRunApiError(500, "DEPLOY_FAILED", f"revision {revision} did not deploy ({why}); {undone}")

    def _undo(self, hook: CloudRunPreviewHook, spec: ServiceSpec, revision: str) -> str:
        from faye_plugin import preview_state
        from faye_plugin.hooks.cloud_run import preview_tag, served_revision, with_tag_on
        from faye_plugin.hooks.proxy import ProxyHook
        from faye_plugin.previews import LABEL_SHA

        target = spec.cloud_run
        pr, slot = int(self.pr), str(self.slot)
        tag = preview_tag(pr)
        route = ProxyHook(proxy_conn_id=spec.proxy_conn_id).get_slot_route(slot)
        routed = route is not None and route.service == spec.name and route.tag == tag
        outcome = ["Cloud Run has no service to undo on"]

        def undo(state: preview_state.PreviewState, current: Any) -> preview_state.Planned | None:
            if current is None:
                return None
            served = served_revision(current, tag) if routed else None
            sha = ""
            if served:
                old = hook.get_revision(f"{current.name}/revisions/{served}")
                sha = old.labels.get(LABEL_SHA, "") if old is not None else ""
                outcome[0] = f"the preview keeps serving {served} under tag {tag} in slot {slot}"
            else:
                outcome[0] = f"tag {tag} removed and slot {slot} left free (the record keeps its expiry)"
            return preview_state.Planned(
                state.undo_deploy(pr, served=served, sha=sha),
                with_tag_on(current, tag, served),
                update_mask=("traffic",),
            )

        preview_state.apply(
            hook, project=target.project, region=target.region, service=target.service, transition=undo
        )
        self.log.warning("Revision %s never became ready: %s", revision, outcome[0])
        return outcome[0]

    def _result(
        self, hook: CloudRunPreviewHook, spec: ServiceSpec, revision: str, operation: str
    ) -> dict[str, Any]:
        from faye_plugin.hooks.cloud_run import preview_tag, tag_revision, tag_uri
        from faye_plugin.preview_state import PreviewState

        target = spec.cloud_run
        tag = preview_tag(int(self.pr))
        service = hook.get_service(project=target.project, region=target.region, service=target.service)
        if service is None:
            raise CloudRunApiError(404, "NOT_FOUND", f"service {target.service} vanished after the deploy")
        serving = tag_revision(service, tag)
        url = tag_uri(service, tag)
        if serving != revision or not url:
            raise CloudRunApiError(
                409,
                "ABORTED",
                f"tag {tag} serves {serving!r} at {url!r}, not the revision just deployed ({revision}): "
                "another deploy moved it",
            )
        record = PreviewState.read(service).get(int(self.pr))
        result = {
            "service": spec.name,
            "pr": int(self.pr),
            "sha": str(self.git_sha),
            "slot": str(self.slot),
            "tag": tag,
            "revision": revision,
            "url": url,
            "image": self._image(),
            "expires": record.expires if record else None,
            "operation": operation,
        }
        self.log.info("Preview %s of %s: revision %s serves %s", tag, spec.name, revision, url)
        return result


class RemovePreviewOperator(BaseOperator):
    """Remove one preview: its proxy route(s), its Cloud Run tag and its annotation record.

    :param service: the catalogue's service name (templated).
    :param pr: the pull request number (templated).
    :param only_expired: remove only if the preview is (still) expired and not pinned on a fresh read.
    """

    template_fields: Sequence[str] = ("service", "pr")
    ui_color = "#ffe0e0"

    def __init__(self, *, service: str, pr: int | str, only_expired: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr
        self.only_expired = only_expired

    def execute(self, context: Context) -> dict[str, Any]:
        from faye_plugin.hooks.proxy import ProxyHook
        from faye_plugin.removal import remove_preview, still_expired

        spec = _spec(str(self.service))
        pr = int(self.pr)
        removal = remove_preview(
            spec,
            pr,
            cloud_run=_hook(spec),
            proxy=ProxyHook(proxy_conn_id=spec.proxy_conn_id),
            only_if=still_expired(pr) if self.only_expired else None,
        )
        return removal.as_dict()


class RemoveExpiredPreviewsOperator(BaseOperator):
    """Remove the expired, unpinned previews of one service: their proxy routes, then all their Cloud
    Run tags and records in one write of the service (``faye_cleanup``, mapped over services).

    :param service: the catalogue's service name (templated).
    :param prs: the pull requests whose previews were found expired (templated); each is checked again
        on a fresh read, so one redeployed or pinned meanwhile is kept.
    """

    template_fields: Sequence[str] = ("service", "prs")
    ui_color = "#ffe0e0"

    def __init__(self, *, service: str, prs: list[int] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.prs = prs

    def execute(self, context: Context) -> dict[str, Any]:
        from faye_plugin.hooks.proxy import ProxyHook
        from faye_plugin.removal import remove_expired_previews

        if not isinstance(self.prs, list) or not all(isinstance(pr, int) for pr in self.prs):
            raise InvalidRequestError(f"prs: expected a list of PR numbers, got {self.prs!r}")
        spec = _spec(str(self.service))
        removals = remove_expired_previews(
            spec, list(self.prs), cloud_run=_hook(spec), proxy=ProxyHook(proxy_conn_id=spec.proxy_conn_id)
        )
        removed = [r.pr for r in removals if r.record_removed]
        kept = {r.pr: r.skipped for r in removals if r.skipped}
        return {"service": spec.name, "removed": removed, "kept": kept}
