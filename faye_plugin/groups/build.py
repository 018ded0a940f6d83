"""The Build task group: the service's image at the request's commit, built, tagged and pushed.

Used by ``faye_deploy`` (when the registry lacks the image) and by ``faye_build``. The DAG's params
carry ``service`` and ``git_sha``. The group's last task, ``<group_id>.push_image``, returns
``{"image": "<repo>@sha256:...", "digest": "sha256:...", "tag": "<repo>:<sha>"}``.

Both tasks go to the queue ``[faye] build_queue`` when it is set (CeleryExecutor: the workers that
can reach the builder serve it), else to the default queue.
"""

from __future__ import annotations

from airflow.sdk import TaskGroup

from faye_plugin.operators.build import BuildImageOperator, PushImageOperator
from faye_plugin.settings import build_queue


def build_group(group_id: str = "build", git_sha: str = "{{ params.git_sha }}") -> TaskGroup:
    """Return a TaskGroup ``build_image >> push_image`` for the current DAG.

    :param group_id: the group's id (task ids are prefixed with it).
    :param git_sha: the commit to build (templated; the request's ``git_sha`` by default).
    """
    queue = build_queue()
    routing = {"queue": queue} if queue else {}
    with TaskGroup(group_id=group_id, tooltip="fetch the source, build the image, push it") as group:
        build = BuildImageOperator(
            task_id="build_image", service="{{ params.service }}", git_sha=git_sha, **routing
        )
        push = PushImageOperator(
            task_id="push_image", service="{{ params.service }}", build_task_id=build.task_id, **routing
        )
        build >> push
    return group
