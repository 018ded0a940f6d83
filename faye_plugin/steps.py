"""The deploy DAG's small read-only steps, as plain functions (the DAG wraps them in ``@task``).

Each takes the request's params and what earlier steps returned, talks to the peers through the
hooks, and returns a JSON-able dict for the next step. No secrets ever appear in what they return.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from faye_plugin import slots
from faye_plugin.catalogue import load_catalogue
from faye_plugin.configs import (
    COMPOSE_FILE,
    ENV_FILE,
    render_compose,
    render_dotenv,
    render_env,
    resolve_secrets,
    secret_refs,
    write_artifacts,
)
from faye_plugin.exceptions import SlotBusyError
from faye_plugin.params import validate_request

# The Cloud Run client library (hooks.cloud_run, previews) is imported only by the steps that use it.

log = logging.getLogger(__name__)


def get_cloud_run_config(params: dict[str, Any]) -> dict[str, Any]:
    """Check the request against the catalogue and Cloud Run's limits, read the service, pick the slot.

    Fails at once (before anything changes) on an unknown service or slot, a tag that breaks Cloud
    Run's limits, an out-of-bounds ttl, or no slot under the ``fail``/``wait`` policies.
    """
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, check_tag_limits, tag_revision
    from faye_plugin.hooks.git import GitSourceHook
    from faye_plugin.hooks.proxy import ProxyHook
    from faye_plugin.preview_state import Liveness, PreviewState, ms
    from faye_plugin.previews import ttl_hours

    request = validate_request({k: v for k, v in params.items() if v is not None})
    catalogue = load_catalogue()
    spec = catalogue.service(request.service)
    if request.slot is not None:
        spec.require_slot(request.slot)
    target = spec.cloud_run
    check_tag_limits(request.tag, target.service)
    hours = ttl_hours(request.ttl_hours, catalogue.defaults)
    # Images are tagged, and revisions labelled, with the full sha: a short one is resolved once here
    # (an unknown commit fails now, before anything changes) and every later step uses the full one.
    git_sha = GitSourceHook(spec.build.git_url).resolve(request.git_sha)
    if git_sha != request.git_sha:
        log.info("Commit %s is %s", request.git_sha, git_sha)

    service = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id).get_service(
        project=target.project, region=target.region, service=target.service
    )
    routes = ProxyHook(proxy_conn_id=spec.proxy_conn_id).list_slot_routes()
    now = time.time()
    # Without Airflow's active runs at hand, a recent claim counts as live (the safe point decides
    # again, on a fresh read and with the runs listed, when it claims).
    holders = slots.holders(
        PreviewState.read(service), routes, service=spec.name, liveness=Liveness(now_ms=ms(now))
    )
    decision = slots.choose_slot(
        service=spec.name,
        pr=request.pr,
        requested_slot=request.slot,
        service_slots=spec.slots,
        holders=holders,
        policy=catalogue.defaults.slot_policy,
        now=now,
    )
    slot, reason = decision.slot, decision.reason
    if slot is None:
        # No slot may be taken now (policy ``wait``, or every holder mid-deploy): the safe point
        # (still_newest) waits until one may be claimed; the slot that frees first is the hint.
        slot = slots.slot_to_wait_for(holders, spec.slots)
        if slot is None:
            raise SlotBusyError(f"{decision.reason}; every slot is pinned, so waiting cannot help")
        reason = f"waiting for slot {slot}: {decision.reason}"
    log.info("Slot %s for %s PR %d: %s", slot, spec.name, request.pr, reason)
    return {
        "service": spec.name,
        "pr": request.pr,
        "git_sha": git_sha,
        "tag": request.tag,
        "slot": slot,
        "slot_reason": reason,
        "evicts": decision.evict.pr if decision.evict else None,
        "ttl_hours": hours,
        "force_build": request.force_build,
        "image_repository": spec.image,
        "cloud_run": {
            "project": target.project,
            "region": target.region,
            "service": target.service,
            "exists": service is not None,
            "latest_ready_revision": service.latest_ready_revision if service is not None else None,
            "tag_revision": tag_revision(service, request.tag) if service is not None else None,
        },
    }


def check_cloud_run(config: dict[str, Any]) -> dict[str, Any]:
    """Return whether Cloud Run already serves this sha under the PR's tag, in the chosen slot.

    ``noop`` is True when the tag's revision carries the requested sha (label ``faye-sha``), its URL
    is reported, the PR's record holds the chosen slot, and that slot's route points at this preview:
    then nothing needs building, deploying or routing.
    """
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, tag_revision, tag_uri
    from faye_plugin.hooks.proxy import ProxyHook
    from faye_plugin.preview_state import PreviewState
    from faye_plugin.previews import LABEL_SHA, sha_matches

    spec = load_catalogue().service(config["service"])
    target = spec.cloud_run
    hook = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id)
    result: dict[str, Any] = {"noop": False, "revision": None, "url": None, "sha": None, "reason": ""}
    service = hook.get_service(project=target.project, region=target.region, service=target.service)
    if service is None:
        result["reason"] = f"service {target.service} does not exist yet"
        return result
    tag = config["tag"]
    revision = tag_revision(service, tag)
    url = tag_uri(service, tag)
    if not revision or not url:
        result["reason"] = f"tag {tag} is not served yet"
        return result
    found = hook.get_revision(f"{service.name}/revisions/{revision}")
    deployed_sha = found.labels.get(LABEL_SHA) if found is not None else None
    result.update(revision=revision, url=url, sha=deployed_sha)
    record = PreviewState.read(service).get(config["pr"])
    route = ProxyHook(proxy_conn_id=spec.proxy_conn_id).get_slot_route(config["slot"])
    if not sha_matches(config["git_sha"], deployed_sha):
        result["reason"] = f"tag {tag} serves {revision} at sha {deployed_sha}, not {config['git_sha']}"
    elif record is None or record.slot != config["slot"]:
        result["reason"] = f"{tag} does not hold slot {config['slot']} yet"
    elif (
        route is None
        or route.service != spec.name
        or int(route.pr) != config["pr"]
        or route.upstream_url != url
    ):
        result["reason"] = f"slot {config['slot']}'s route does not point at {tag}"
    else:
        result["noop"] = True
        result["reason"] = f"{tag} already serves {deployed_sha} as {revision} in slot {config['slot']}"
        result["slot_url"] = ProxyHook(proxy_conn_id=spec.proxy_conn_id).slot_url(config["slot"])
    log.info("check_cloud_run: %s", result["reason"])
    return result


def check_image(config: dict[str, Any]) -> dict[str, str] | None:
    """Return ``{"image", "digest", "tag"}`` if the registry has the image of this sha, else None."""
    from faye_plugin.hooks.registry import RegistryHook

    spec = load_catalogue().service(config["service"])
    repository, sha = spec.image, config["git_sha"]
    digest = RegistryHook(registry_conn_id=spec.registry_conn_id).get_manifest_digest(repository, sha)
    if digest is None:
        log.info("%s:%s is not in the registry: it will be built", repository, sha)
        return None
    log.info("%s:%s is in the registry as %s", repository, sha, digest)
    return {"image": f"{repository}@{digest}", "digest": digest, "tag": f"{repository}:{sha}"}


def should_build(
    config: dict[str, Any],
    cloud_run: dict[str, Any],
    image: dict[str, Any] | None,
    expiry: dict[str, Any],
) -> list[str]:
    """Return the branch to follow: nothing (a no-op), the ``build`` group, or straight to ``join``.

    ``check_cloud_run`` and ``extend_expiry`` run side by side, so a ``faye_cleanup`` may remove the
    preview after the check saw it and before the expiry write. A no-op is declared only when the
    expiry write pushed out the record of a tag serving the very revision the check found
    (``expiry["extended_revision"]``): after that write a cleanup keeps the preview (it re-reads the
    expiry inside its own etag-guarded write). Otherwise the preview is deployed again.
    """
    if cloud_run.get("noop"):
        extended = expiry.get("extended_revision")
        if extended is not None and extended == cloud_run.get("revision"):
            log.info("Nothing to do: %s", cloud_run.get("reason"))
            return []
        log.info(
            "Not a no-op after all: %s, but the expiry write found %s (removed meanwhile?): deploying again",
            cloud_run.get("reason"),
            f"tag {config.get('tag')} at {extended}" if extended else "no preview to extend",
        )
    if config.get("force_build"):
        log.info("force_build: building although the registry has %s", (image or {}).get("image"))
        return ["build"]
    return ["build"] if image is None else ["join"]


def prepare_configs(
    config: dict[str, Any],
    expiry: dict[str, Any],
    image: dict[str, Any] | None,
    built: dict[str, Any] | None,
    artifacts_dir: Path,
    *,
    claimed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Render the preview's environment, ``.env`` and docker-compose file; keep them as run artifacts.

    Secrets are resolved once here to fail early when one is missing; their values go nowhere: the
    files carry the reference, and ``deploy_revision`` resolves them again itself. ``claimed`` is what
    ``still_newest`` returned: its slot is the one the preview takes.
    """
    from faye_plugin.hooks.proxy import ProxyHook

    spec = load_catalogue().service(config["service"])
    chosen = built or image
    if not chosen or not chosen.get("image"):
        raise ValueError("no image: check_image found none and the build returned none")
    # The slot the safe point claimed (it decides on a fresh read); without queue steps, the config's.
    slot = (claimed or {}).get("slot") or config["slot"]
    tag = config["tag"]
    slot_url = ProxyHook(proxy_conn_id=spec.proxy_conn_id).slot_url(slot)
    context = {
        "service": spec.name,
        "pr": config["pr"],
        "sha": config["git_sha"],
        "git_sha": config["git_sha"],
        "slot": slot,
        "tag": tag,
        "image": chosen["image"],
        "slot_url": slot_url,
    }
    env = render_env(spec, context)
    refs = secret_refs(spec)
    resolve_secrets(refs)  # fail now if one is missing; the values are dropped
    files = write_artifacts(
        artifacts_dir,
        {
            ENV_FILE: render_dotenv(env, refs),
            COMPOSE_FILE: render_compose(spec, image=chosen["image"], slot=slot, tag=tag, refs=refs),
        },
    )
    log.info("Configs for %s %s in slot %s: %s", spec.name, tag, slot, files)
    return {
        "slot": slot,
        "slot_url": slot_url,
        "image": chosen["image"],
        "env": env,
        "expires": expiry["expires"],
        "secret_names": sorted(refs),
        "artifacts": files,
    }


def preview_url(
    config: dict[str, Any],
    cloud_run: dict[str, Any],
    deployed: dict[str, Any] | None,
    routed: dict[str, Any] | None,
) -> dict[str, Any]:
    """Return the run's outcome: the preview's URLs and revision, whether deployed now or already."""
    if deployed and routed:
        outcome = {
            "noop": False,
            "url": deployed["url"],
            "slot_url": routed["slot_url"],
            "revision": deployed["revision"],
            "sha": deployed["sha"],
        }
    elif cloud_run.get("noop"):
        outcome = {
            "noop": True,
            "url": cloud_run["url"],
            "slot_url": cloud_run.get("slot_url"),
            "revision": cloud_run["revision"],
            "sha": cloud_run["sha"],
        }
    else:
        raise ValueError("the preview was neither deployed nor already serving: see the failed step")
    slot = deployed["slot"] if deployed and routed else config["slot"]
    outcome.update(service=config["service"], pr=config["pr"], slot=slot, tag=config["tag"])
    log.info("Preview of %s PR %d: %s", outcome["service"], outcome["pr"], outcome)
    return outcome
