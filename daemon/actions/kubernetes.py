"""`kubernetes.*` actions, with `kubectl` semantics, built on the official client.

Every mutating call carries the annotations `opsmedic.io/change` (the action attempt's
idempotency key) and `opsmedic.io/incident`, in the same write as the change itself. A retry
of the same attempt (after a crash between "sent" and "recorded") reads the object first and
sees that its change is already there, so it never acts twice. Each change is also recorded as
a Kubernetes Event on the object, so `kubectl describe` shows who changed what.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, model_validator

from daemon.actions.base import ACTIONS, ActionContext, ActionKind, ActionParams, ActionResult
from daemon.diagnosis.causes import ACT_ON_TARGET, DELETE_POD, RERUN, ROLLBACK, SCALE
from daemon.errors import PermanentError
from daemon.kube.cluster import Conflict, KubeClient, NotFound, rfc3339
from daemon.kube.workloads import (
    CHANGE_CAUSE,
    annotations_of,
    comparable_template,
    current_revision,
    history,
    images,
    meta,
    patch_object,
    pod_view,
    read_object,
    replicasets_of,
)

log = logging.getLogger(__name__)

CHANGE = "opsmedic.io/change"
INCIDENT = "opsmedic.io/incident"
ROLLED_BACK_FROM = "opsmedic.io/rolled-back-from"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
DNS_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class KubeParams(ActionParams):
    cluster: str = Field("default", description="Cluster name from the daemon config")
    namespace: str = Field(pattern=DNS_NAME)


class WorkloadParams(KubeParams):
    """Exactly one of `deployment`, `statefulset`, `daemonset`."""

    deployment: str | None = Field(None, pattern=DNS_NAME)
    statefulset: str | None = Field(None, pattern=DNS_NAME)
    daemonset: str | None = Field(None, pattern=DNS_NAME)

    @model_validator(mode="after")
    def _one_target(self) -> WorkloadParams:
        given = [k for k in ("deployment", "statefulset", "daemonset") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("name exactly one of `deployment`, `statefulset`, `daemonset`")
        return self

    @property
    def kind(self) -> str:
        if self.deployment:
            return "Deployment"
        return "StatefulSet" if self.statefulset else "DaemonSet"

    @property
    def name(self) -> str:
        return str(self.deployment or self.statefulset or self.daemonset)

    def describe(self) -> str:
        return f"{self.kind.lower()} {self.namespace}/{self.name}"


def marks(context: ActionContext) -> dict[str, str]:
    return {CHANGE: context.idempotency_key, INCIDENT: str(context.incident_id)}


def already_done(obj: Mapping[str, Any], context: ActionContext) -> bool:
    return annotations_of(obj).get(CHANGE) == context.idempotency_key


def replayed(what: str, context: ActionContext) -> ActionResult:
    return ActionResult(
        ok=True,
        message=f"{what}: already done by this attempt ({context.idempotency_key}); not repeated",
        data={"changed": False, "replayed": True},
    )


def landed(what: str, context: ActionContext) -> ActionResult:
    return ActionResult(
        ok=True,
        message=f"{what}: the change of attempt {context.attempt} is on the object "
        f"({CHANGE}={context.idempotency_key}): it landed",
        data={"changed": True, "reconciled": True},
    )


async def marked(
    kube: KubeClient, kind: str, namespace: str, name: str, context: ActionContext
) -> bool:
    """Does the object carry this attempt's change mark (its change landed)? A missing
    object carries none."""
    try:
        obj = await read_object(kube, kind, namespace, name)
    except NotFound:
        return False
    return already_done(obj, context)


async def record_event(
    kube: KubeClient,
    obj: Mapping[str, Any],
    reason: str,
    message: str,
    context: ActionContext,
    *,
    required: bool = False,
) -> None:
    """A Normal event on `obj` naming the incident; its name is derived from the attempt, so a
    retry cannot record it twice. Best effort unless `required`."""
    m = meta(obj)
    now = rfc3339(context.clock.now())
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{m['name']}.{context.idempotency_key}"[:253],
            "namespace": m["namespace"],
            "labels": {CHANGE: context.idempotency_key},
            "annotations": marks(context),
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": obj.get("kind", ""),
            "name": m["name"],
            "namespace": m["namespace"],
            "uid": m.get("uid"),
        },
        "reason": reason,
        "message": message,
        "type": "Normal",
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "source": {"component": "opsmedic"},
        "reportingComponent": "opsmedic",
        "reportingInstance": socket.gethostname()[:128],
    }
    try:
        await kube.call(
            "core",
            "create_namespaced_event",
            f"record event on {obj.get('kind')} {m['namespace']}/{m['name']}",
            namespace=m["namespace"],
            body=event,
        )
    except Conflict as exc:
        if not exc.already_exists:
            raise
    except PermanentError as exc:
        if required:
            raise
        log.warning("could not record a Kubernetes event (%s); the change itself is done", exc)


def cause(context: ActionContext, what: str) -> str:
    return f"opsmedic: {what} for incident {context.incident_id} (attempt {context.attempt})"


# --- kubernetes.restart -------------------------------------------------------------------


class RestartParams(WorkloadParams):
    pass


class WorkloadReconcile:
    """An attempt on one workload landed if the workload carries its change mark."""

    async def reconcile(self, params: Any, context: ActionContext) -> ActionResult | None:
        kube = context.kube(params.cluster)
        if await marked(kube, params.kind, params.namespace, params.name, context):
            return landed(f"{params.kind.lower()} {params.namespace}/{params.name}", context)
        return None


class RestartAction(WorkloadReconcile):
    """`kubectl rollout restart`: stamp the pod template with `restartedAt`."""

    async def run(self, params: RestartParams, context: ActionContext) -> ActionResult:
        kube = context.kube(params.cluster)
        what = f"restart {params.describe()}"

        async def attempt() -> ActionResult:
            obj = await read_object(kube, params.kind, params.namespace, params.name)
            if already_done(obj, context):
                return replayed(what, context)
            if obj["spec"].get("paused"):
                return ActionResult(
                    ok=False,
                    message=f"{what}: refused: the deployment is paused (a rollout is being "
                    "held on purpose); resume it with `kubectl rollout resume` first",
                    data={"changed": False, "refused": "paused"},
                )
            at = rfc3339(context.clock.now())
            body = {
                "metadata": {
                    "resourceVersion": meta(obj)["resourceVersion"],
                    "annotations": {**marks(context), CHANGE_CAUSE: cause(context, "restart")},
                },
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}},
            }
            updated = await patch_object(kube, params.kind, params.namespace, params.name, body)
            await record_event(kube, updated, "OpsmedicRestart", cause(context, "restart"), context)
            return ActionResult(
                ok=True,
                message=f"restarted {params.describe()} (restartedAt {at})",
                data={"changed": True, "restarted_at": at},
            )

        return await kube.on_conflict(attempt)


# --- kubernetes.rollback ------------------------------------------------------------------


class RollbackParams(KubeParams):
    deployment: str = Field(pattern=DNS_NAME)
    to_revision: int | None = Field(
        None, ge=1, description="Revision to return to (default: the previous one)"
    )


class RollbackAction:
    """`kubectl rollout undo`, computed client-side from the deployment's ReplicaSets."""

    async def reconcile(
        self, params: RollbackParams, context: ActionContext
    ) -> ActionResult | None:
        kube = context.kube(params.cluster)
        if await marked(kube, "Deployment", params.namespace, params.deployment, context):
            return landed(f"roll back deployment {params.namespace}/{params.deployment}", context)
        return None

    async def run(self, params: RollbackParams, context: ActionContext) -> ActionResult:
        kube = context.kube(params.cluster)
        what = f"roll back deployment {params.namespace}/{params.deployment}"

        def refuse(reason: str, refused: str) -> ActionResult:
            return ActionResult(
                ok=False, message=f"{what}: {reason}", data={"changed": False, "refused": refused}
            )

        async def attempt() -> ActionResult:
            dep = await read_object(kube, "Deployment", params.namespace, params.deployment)
            if already_done(dep, context):
                return replayed(what, context)
            if dep["spec"].get("paused"):
                return refuse(
                    "refused: the deployment is paused; resume it with `kubectl rollout resume` "
                    "first",
                    "paused",
                )
            revisions = history(dep, await replicasets_of(kube, dep))
            current = current_revision(dep, revisions)
            if params.to_revision is not None:
                target = next((r for r in revisions if r.number == params.to_revision), None)
                if target is None:
                    have = ", ".join(str(r.number) for r in revisions) or "none"
                    return refuse(
                        f"refused: revision {params.to_revision} not found (have: {have})",
                        "no-revision",
                    )
            else:
                newest = current.number if current else (revisions[0].number if revisions else 0)
                target = next((r for r in revisions if r.number < newest), None)
                if target is None:
                    return refuse(
                        "refused: no earlier revision to roll back to", "no-earlier-revision"
                    )
            template = comparable_template(target.template)
            if template == comparable_template(dep["spec"]["template"]):
                return refuse(
                    f"skipped: the deployment already runs revision {target.number}'s template",
                    "already-there",
                )
            if (
                target.template_hash
                and annotations_of(dep).get(ROLLED_BACK_FROM) == target.template_hash
            ):
                return refuse(
                    f"refused: revision {target.number} is the template opsmedic rolled back "
                    "from; a human must decide",
                    "would-undo-rollback",
                )
            from_revision = current.number if current else None
            from_images = images(dep["spec"]["template"])
            note = cause(context, f"rollback to revision {target.number}")
            new_annotations = {
                **annotations_of(dep),
                **marks(context),
                CHANGE_CAUSE: note,
                ROLLED_BACK_FROM: current.template_hash if current else "",
            }
            body = [  # what kubectl sends: replace the template and the annotations
                {
                    "op": "replace",
                    "path": "/metadata/resourceVersion",
                    "value": meta(dep)["resourceVersion"],
                },
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/metadata/annotations", "value": new_annotations},
            ]
            updated = await patch_object(
                kube, "Deployment", params.namespace, params.deployment, body
            )
            await record_event(kube, updated, "OpsmedicRollback", note, context)
            data = {
                "changed": True,
                "from_revision": from_revision,
                "to_revision": target.number,
                "from_images": from_images,
                "to_images": dict(target.images),
            }
            return ActionResult(
                ok=True,
                message=f"rolled back {params.namespace}/{params.deployment} from revision "
                f"{from_revision} ({_images(from_images)}) to revision {target.number} "
                f"({_images(target.images)})",
                data=data,
            )

        return await kube.on_conflict(attempt)


def _images(by_container: Mapping[str, str]) -> str:
    return ", ".join(by_container.values()) or "no containers"


# --- kubernetes.scale ---------------------------------------------------------------------


class ScaleParams(KubeParams):
    deployment: str | None = Field(None, pattern=DNS_NAME)
    statefulset: str | None = Field(None, pattern=DNS_NAME)
    replicas: int | None = Field(None, ge=0, description="Set this many replicas")
    by: int | None = Field(None, description="Or change the current count by this much")
    min: int = Field(1, ge=0, description="Never fewer replicas than this")
    max: int = Field(ge=1, description="Never more replicas than this")

    agent_settable: ClassVar[frozenset[str]] = frozenset({"replicas", "by"})

    @model_validator(mode="after")
    def _valid(self) -> ScaleParams:
        if bool(self.deployment) == bool(self.statefulset):
            raise ValueError("name exactly one of `deployment`, `statefulset`")
        if (self.replicas is None) == (self.by is None):
            raise ValueError("set exactly one of `replicas`, `by`")
        if self.min > self.max:
            raise ValueError(f"`min` ({self.min}) is above `max` ({self.max})")
        if self.replicas is not None and not self.min <= self.replicas <= self.max:
            raise ValueError(
                f"replicas {self.replicas} is outside the playbook's bounds "
                f"[{self.min}, {self.max}]"
            )
        return self

    @property
    def kind(self) -> str:
        return "Deployment" if self.deployment else "StatefulSet"

    @property
    def name(self) -> str:
        return str(self.deployment or self.statefulset)


class ScaleAction(WorkloadReconcile):
    async def run(self, params: ScaleParams, context: ActionContext) -> ActionResult:
        kube = context.kube(params.cluster)
        what = f"scale {params.kind.lower()} {params.namespace}/{params.name}"

        async def attempt() -> ActionResult:
            obj = await read_object(kube, params.kind, params.namespace, params.name)
            if already_done(obj, context):
                return replayed(what, context)
            current = int(obj["spec"].get("replicas", 1))
            if params.replicas is not None:
                desired = params.replicas
            else:
                desired = max(params.min, min(params.max, current + int(params.by or 0)))
            if desired == current:
                return ActionResult(
                    ok=False,
                    message=f"{what}: already at {current} replicas "
                    f"(bounds [{params.min}, {params.max}]); nothing to change",
                    data={"changed": False, "replicas": current},
                )
            body = {
                "metadata": {
                    "resourceVersion": meta(obj)["resourceVersion"],
                    "annotations": marks(context),
                },
                "spec": {"replicas": desired},
            }
            updated = await patch_object(kube, params.kind, params.namespace, params.name, body)
            note = cause(context, f"scale from {current} to {desired} replicas")
            await record_event(kube, updated, "OpsmedicScale", note, context)
            return ActionResult(
                ok=True,
                message=f"scaled {params.namespace}/{params.name} from {current} to {desired}",
                data={"changed": True, "from_replicas": current, "to_replicas": desired},
            )

        return await kube.on_conflict(attempt)


# --- kubernetes.delete_pod ----------------------------------------------------------------


class DeletePodParams(KubeParams):
    selector: str = Field(min_length=1, description="Label selector of the pods (required)")
    max_pods: int = Field(1, ge=1, le=100, description="Delete at most this many pods")
    grace_period_seconds: int | None = Field(None, ge=0)


class DeletePodAction:
    """Delete the worst pods (not ready, most restarts, oldest) among those the selector
    matches, at most `max_pods`. An event recorded on each pod *before* deleting it marks the
    attempt, so a retry after a crash deletes nothing more (at most once)."""

    async def _marked(self, kube: KubeClient, ns: str, context: ActionContext) -> bool:
        done = await kube.call(
            "core",
            "list_namespaced_event",
            f"look up earlier deletions in {ns}",
            namespace=ns,
            label_selector=f"{CHANGE}={context.idempotency_key}",
        )
        return bool(done.get("items"))

    async def reconcile(
        self, params: DeletePodParams, context: ActionContext
    ) -> ActionResult | None:
        kube = context.kube(params.cluster)
        if await self._marked(kube, params.namespace, context):
            return landed(f"delete pods {params.selector!r} in {params.namespace}", context)
        return None

    async def run(self, params: DeletePodParams, context: ActionContext) -> ActionResult:
        kube = context.kube(params.cluster)
        ns = params.namespace
        what = f"delete pods {params.selector!r} in {ns}"
        if await self._marked(kube, ns, context):
            return replayed(what, context)
        found = await kube.call(
            "core",
            "list_namespaced_pod",
            f"list pods {params.selector!r} in {ns}",
            namespace=ns,
            label_selector=params.selector,
        )
        pods = [p for p in found.get("items") or [] if not meta(p).get("deletionTimestamp")]
        if not pods:
            return ActionResult(
                ok=False, message=f"{what}: no pod matches", data={"changed": False}
            )

        def badness(pod: Mapping[str, Any]) -> tuple[bool, int, str]:
            view = pod_view(pod)
            return (view["ready"], -view["restarts"], meta(pod).get("creationTimestamp", ""))

        chosen = sorted(pods, key=badness)[: params.max_pods]
        note = cause(context, "pod deletion")
        for pod in chosen:
            await record_event(
                kube, {**pod, "kind": "Pod"}, "OpsmedicDeletePod", note, context, required=True
            )
        deleted = []
        for pod in chosen:
            name = meta(pod)["name"]
            try:
                await kube.call(
                    "core",
                    "delete_namespaced_pod",
                    f"delete pod {ns}/{name}",
                    name=name,
                    namespace=ns,
                    grace_period_seconds=params.grace_period_seconds,
                    body={"preconditions": {"uid": meta(pod)["uid"]}},
                )
            except NotFound:
                pass  # already gone
            deleted.append(name)
        return ActionResult(
            ok=True,
            message=f"deleted {len(deleted)} of {len(pods)} matching pod(s): {', '.join(deleted)}",
            data={"changed": True, "deleted": deleted, "matched": len(pods)},
        )


# --- kubernetes.rerun_job -----------------------------------------------------------------

CONTROLLER_LABELS = (
    "controller-uid",
    "job-name",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
)


class RerunJobParams(KubeParams):
    cronjob: str | None = Field(None, pattern=DNS_NAME, description="Run a Job from this CronJob")
    job: str | None = Field(None, pattern=DNS_NAME, description="Or rerun this failed Job")
    suspend: bool | None = Field(
        None, description="With `cronjob`: then suspend (true) or resume (false) its schedule"
    )
    run: bool = Field(True, description="Create the Job (false: only suspend/resume)")

    @model_validator(mode="after")
    def _valid(self) -> RerunJobParams:
        if bool(self.cronjob) == bool(self.job):
            raise ValueError("name exactly one of `cronjob`, `job`")
        if self.suspend is not None and not self.cronjob:
            raise ValueError("`suspend` applies to a `cronjob`")
        if not self.run and self.suspend is None:
            raise ValueError("with `run: false`, set `suspend`")
        return self


def job_name(base: str, context: ActionContext) -> str:
    suffix = f"-om{context.incident_id}-{context.attempt}"
    return base[: 63 - len(suffix)].rstrip("-.") + suffix


def _without_controller_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (labels or {}).items() if k not in CONTROLLER_LABELS}


class RerunJobAction:
    """`kubectl create job --from=cronjob/NAME`, or a fresh copy of a failed Job (the failed
    one is kept for its logs). The new Job's name comes from the attempt, so a retry finds it."""

    async def reconcile(
        self, params: RerunJobParams, context: ActionContext
    ) -> ActionResult | None:
        kube = context.kube(params.cluster)
        ns = params.namespace
        if params.run:
            name = job_name(params.cronjob or params.job or "", context)
            found = await marked(kube, "Job", ns, name, context)
        else:  # only (un)suspending the CronJob
            found = await marked(kube, "CronJob", ns, params.cronjob or "", context)
        return landed(f"rerun in {ns}", context) if found else None

    async def run(self, params: RerunJobParams, context: ActionContext) -> ActionResult:
        kube = context.kube(params.cluster)
        ns = params.namespace
        source = f"cronjob/{params.cronjob}" if params.cronjob else f"job/{params.job}"
        data: dict[str, Any] = {"source": source}
        messages = []
        if params.run:
            created = await self._create(kube, params, context)
            if isinstance(created, ActionResult):
                return created
            data.update(created)
            messages.append(f"created job {ns}/{created['job']} from {source}")
        if params.suspend is not None and params.cronjob:
            changed = await self._suspend(kube, ns, params.cronjob, params.suspend, context)
            data["suspend"] = params.suspend
            state = "suspended" if params.suspend else "resumed"
            messages.append(
                f"{state} cronjob {ns}/{params.cronjob}" + ("" if changed else " (already so)")
            )
        return ActionResult(ok=True, message="; ".join(messages), data=data)

    async def _create(
        self, kube: KubeClient, params: RerunJobParams, context: ActionContext
    ) -> dict[str, Any] | ActionResult:
        ns = params.namespace
        if params.cronjob:
            cj = await read_object(kube, "CronJob", ns, params.cronjob)
            template = cj["spec"]["jobTemplate"]
            name = job_name(params.cronjob, context)
            job = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                    "annotations": {
                        **((template.get("metadata") or {}).get("annotations") or {}),
                        "cronjob.kubernetes.io/instantiate": "manual",
                        **marks(context),
                    },
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "CronJob",
                            "name": params.cronjob,
                            "uid": meta(cj)["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": template["spec"],
            }
        else:
            assert params.job is not None  # noqa: S101 - the model demands one
            old = await read_object(kube, "Job", ns, params.job)
            failed = any(
                c.get("type") == "Failed" and c.get("status") == "True"
                for c in (old.get("status") or {}).get("conditions") or []
            )
            if not failed:
                status = old.get("status") or {}
                return ActionResult(
                    ok=False,
                    message=f"job {ns}/{params.job} has not failed (active "
                    f"{status.get('active', 0)}, succeeded {status.get('succeeded', 0)}); "
                    "not rerunning it",
                    data={"changed": False, "refused": "not-failed"},
                )
            spec = dict(old["spec"])
            spec.pop("selector", None)
            template = dict(spec["template"])
            template["metadata"] = {
                **(template.get("metadata") or {}),
                "labels": _without_controller_labels(
                    (template.get("metadata") or {}).get("labels")
                ),
            }
            spec["template"] = template
            name = job_name(params.job, context)
            job = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": _without_controller_labels(meta(old).get("labels")),
                    "annotations": {**marks(context), "opsmedic.io/rerun-of": params.job},
                },
                "spec": spec,
            }
        try:
            created = await kube.call(
                "batch", "create_namespaced_job", f"create job {ns}/{name}", namespace=ns, body=job
            )
        except Conflict as exc:
            if not exc.already_exists:
                raise
            existing = await read_object(kube, "Job", ns, name)
            if not already_done(existing, context):
                raise PermanentError(
                    f"job {ns}/{name} exists and was not made by this attempt"
                ) from None
            return replayed(f"create job {ns}/{name}", context)
        await record_event(kube, created, "OpsmedicRerunJob", cause(context, "job rerun"), context)
        return {"changed": True, "job": name}

    async def _suspend(
        self, kube: KubeClient, ns: str, name: str, suspend: bool, context: ActionContext
    ) -> bool:
        cj = await read_object(kube, "CronJob", ns, name)
        if bool(cj["spec"].get("suspend")) == suspend:
            return False
        body = {"metadata": {"annotations": marks(context)}, "spec": {"suspend": suspend}}
        await patch_object(kube, "CronJob", ns, name, body)
        return True


ACTIONS.register(
    "kubernetes.restart", ActionKind(RestartParams, RestartAction, ACT_ON_TARGET, idempotent=True)
)
ACTIONS.register(
    "kubernetes.rollback", ActionKind(RollbackParams, RollbackAction, ROLLBACK, idempotent=True)
)
ACTIONS.register("kubernetes.scale", ActionKind(ScaleParams, ScaleAction, SCALE, idempotent=True))
ACTIONS.register(
    "kubernetes.delete_pod",
    ActionKind(DeletePodParams, DeletePodAction, DELETE_POD, idempotent=True),
)
ACTIONS.register(
    "kubernetes.rerun_job", ActionKind(RerunJobParams, RerunJobAction, RERUN, idempotent=True)
)
