"""Defaulting and validation, as the API server applies them on create and update."""

from __future__ import annotations

import re
from typing import Any

from .errors import FieldErr, Raw
from .selectors import from_label_selector, go_label_selector, matches

Obj = dict[str, Any]

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_NAME_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value', "
    " or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)

DEFAULT_TOLERATIONS = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]


# --------------------------------------------------------------------------- type checks


class DecodeError(Exception):
    """The body cannot be decoded into the Go type (the API server answers 400)."""


def _expect(value: Any, types: type | tuple[type, ...], where: str, go_type: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise DecodeError(
            f"json: cannot unmarshal bool into Go struct field {where} of type {go_type}"
        )
    if not isinstance(value, types):
        found = {str: "string", dict: "object", list: "array", int: "number", float: "number"}.get(
            type(value), "value"
        )
        raise DecodeError(
            f"json: cannot unmarshal {found} into Go struct field {where} of type {go_type}"
        )


def check_types(kind: str, obj: Obj) -> None:
    meta = obj.get("metadata")
    _expect(meta, dict, f"{kind}.metadata", "v1.ObjectMeta")
    for field in ("labels", "annotations"):
        values = (meta or {}).get(field)
        _expect(values, dict, f"ObjectMeta.metadata.{field}", "map[string]string")
        for v in (values or {}).values():
            _expect(v, str, f"ObjectMeta.metadata.{field}", "string")
    spec = obj.get("spec")
    if spec is not None and kind not in ("Namespace",):
        _expect(spec, dict, f"{kind}.spec", f"v1.{kind}Spec")
    if isinstance(spec, dict):
        for field in (
            "replicas",
            "backoffLimit",
            "completions",
            "parallelism",
            "progressDeadlineSeconds",
            "revisionHistoryLimit",
            "minReadySeconds",
            "leaseDurationSeconds",
            "activeDeadlineSeconds",
        ):
            if field in spec and not (
                isinstance(spec[field], int) and not isinstance(spec[field], bool)
            ):
                if spec[field] is not None:
                    _expect(spec[field], int, f"{kind}Spec.spec.{field}", "int32")


# --------------------------------------------------------------------------- defaulting


def image_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_container(c: Obj) -> None:
    if isinstance(c.get("image"), str) and "imagePullPolicy" not in c:
        c["imagePullPolicy"] = image_pull_policy(c["image"])
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(probe_name)
        if isinstance(probe, dict):
            probe.setdefault("timeoutSeconds", 1)
            probe.setdefault("periodSeconds", 10)
            probe.setdefault("successThreshold", 1)
            probe.setdefault("failureThreshold", 3)
            if isinstance(probe.get("httpGet"), dict):
                probe["httpGet"].setdefault("scheme", "HTTP")
                probe["httpGet"].setdefault("path", "/")
    for env in c.get("env") or []:
        ref = env.get("valueFrom", {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")


def default_pod_spec(spec: Obj, *, restart_policy: str = "Always") -> None:
    spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for field in ("containers", "initContainers"):
        for c in spec.get(field) or []:
            if isinstance(c, dict):
                default_container(c)
    for vol in spec.get("volumes") or []:
        if isinstance(vol, dict):
            if isinstance(vol.get("configMap"), dict):
                vol["configMap"].setdefault("defaultMode", 420)
            if isinstance(vol.get("secret"), dict):
                vol["secret"].setdefault("defaultMode", 420)


def default_template(obj: Obj, path: tuple[str, ...] = ("spec", "template")) -> Obj | None:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    if not isinstance(cur, dict):
        return None
    cur.setdefault("metadata", {})
    if cur.get("metadata") is None:
        cur["metadata"] = {}
    cur["metadata"].pop("creationTimestamp", None)
    spec = cur.setdefault("spec", {})
    if isinstance(spec, dict):
        default_pod_spec(spec)
    return cur


def default_object(kind: str, obj: Obj) -> None:
    """In-place defaulting (the API server's SetDefaults_* functions)."""
    spec = obj.get("spec")
    if kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        default_template(obj)
    elif kind == "ReplicaSet" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        default_template(obj)
    elif kind == "StatefulSet" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        us = spec.setdefault("updateStrategy", {})
        us.setdefault("type", "RollingUpdate")
        if us["type"] == "RollingUpdate":
            us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault(
            "persistentVolumeClaimRetentionPolicy",
            {"whenDeleted": "Retain", "whenScaled": "Retain"},
        )
        default_template(obj)
    elif kind == "DaemonSet" and isinstance(spec, dict):
        us = spec.setdefault("updateStrategy", {})
        us.setdefault("type", "RollingUpdate")
        if us["type"] == "RollingUpdate":
            ru = us.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", 1)
            ru.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        default_template(obj)
    elif kind == "Job" and isinstance(spec, dict):
        default_job_spec(spec)
    elif kind == "CronJob" and isinstance(spec, dict):
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        jt = spec.setdefault("jobTemplate", {})
        if isinstance(jt, dict):
            jt.setdefault("metadata", {})
            jspec = jt.setdefault("spec", {})
            if isinstance(jspec, dict):
                default_job_spec(jspec)
    elif kind == "Pod" and isinstance(spec, dict):
        default_pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        tolerations = spec.setdefault("tolerations", [])
        if isinstance(tolerations, list):
            present = {t.get("key") for t in tolerations if isinstance(t, dict)}
            for tol in DEFAULT_TOLERATIONS:
                if tol["key"] not in present:
                    tolerations.append(dict(tol))
    elif kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})


def default_job_spec(spec: Obj) -> None:
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.get("template")
    if isinstance(template, dict):
        template.setdefault("metadata", {})
        if template["metadata"] is None:
            template["metadata"] = {}
        template["metadata"].pop("creationTimestamp", None)
        pod_spec = template.setdefault("spec", {})
        if isinstance(pod_spec, dict):
            default_pod_spec(pod_spec)


# --------------------------------------------------------------------------- validation


def validate_name(
    name: Any, *, label: bool = False, field: str = "metadata.name"
) -> list[FieldErr]:
    if not name:
        return [FieldErr("Required", field, detail="name or generateName is required")]
    pattern, msg = (
        (_DNS1123_LABEL, LABEL_NAME_MSG) if label else (_DNS1123_SUBDOMAIN, SUBDOMAIN_MSG)
    )
    if not isinstance(name, str) or not pattern.match(name):
        return [FieldErr("Invalid", field, name, msg)]
    if len(name) > (63 if label else 253):
        limit = 63 if label else 253
        return [FieldErr("Invalid", field, name, f"must be no more than {limit} characters")]
    return []


def validate_labels(labels: Any, field: str) -> list[FieldErr]:
    errs: list[FieldErr] = []
    for key, value in (labels or {}).items():
        name = key.rsplit("/", 1)[-1]
        if not _QUALIFIED_NAME.match(name) or len(name) > 63:
            errs.append(FieldErr("Invalid", field, key, QUALIFIED_NAME_MSG))
        if not isinstance(value, str) or not _LABEL_VALUE.match(value) or len(value) > 63:
            errs.append(FieldErr("Invalid", field, value, LABEL_VALUE_MSG))
    return errs


def validate_meta(obj: Obj, *, namespaced: bool, label_name: bool = False) -> list[FieldErr]:
    meta = obj.get("metadata") or {}
    errs = validate_name(meta.get("name"), label=label_name)
    errs += validate_labels(meta.get("labels"), "metadata.labels")
    return errs


def validate_pod_spec(spec: Any, path: str) -> list[FieldErr]:
    errs: list[FieldErr] = []
    if not isinstance(spec, dict):
        return [FieldErr("Required", path)]
    containers = spec.get("containers")
    if not containers:
        errs.append(FieldErr("Required", f"{path}.containers"))
    seen: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(field) or []):
            where = f"{path}.{field}[{i}]"
            if not isinstance(c, dict):
                errs.append(FieldErr("Required", where))
                continue
            name = c.get("name")
            if not name:
                errs.append(FieldErr("Required", f"{where}.name"))
            elif not isinstance(name, str) or not _DNS1123_LABEL.match(name):
                errs.append(FieldErr("Invalid", f"{where}.name", name, LABEL_NAME_MSG))
            elif name in seen:
                errs.append(FieldErr("Duplicate", f"{where}.name", name))
            else:
                seen.add(name)
            if not c.get("image"):
                errs.append(FieldErr("Required", f"{where}.image"))
            policy = c.get("imagePullPolicy")
            if policy not in (None, "Always", "IfNotPresent", "Never"):
                errs.append(
                    FieldErr(
                        "NotSupported",
                        f"{where}.imagePullPolicy",
                        policy,
                        'supported values: "Always", "IfNotPresent", "Never"',
                    )
                )
    policy = spec.get("restartPolicy")
    if policy not in (None, "Always", "OnFailure", "Never"):
        errs.append(
            FieldErr(
                "NotSupported",
                f"{path}.restartPolicy",
                policy,
                'supported values: "Always", "OnFailure", "Never"',
            )
        )
    return errs


def _validate_selector_template(obj: Obj, errs: list[FieldErr]) -> None:
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        errs.append(FieldErr("Required", "spec.selector"))
    elif not (selector.get("matchLabels") or selector.get("matchExpressions")):
        errs.append(
            FieldErr(
                "Invalid",
                "spec.selector",
                Raw(go_label_selector(selector)),
                "empty selector is invalid for deployment",
            )
        )
    elif not matches(from_label_selector(selector), labels):
        text = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
        errs.append(
            FieldErr(
                "Invalid",
                "spec.template.metadata.labels",
                Raw(f"map[string]string{{{text}}}"),
                "`selector` does not match template `labels`",
            )
        )
    errs += validate_labels(labels, "spec.template.metadata.labels")


def _non_negative(spec: Obj, field: str, errs: list[FieldErr], path: str = "spec") -> None:
    value = spec.get(field)
    if isinstance(value, int) and value < 0:
        errs.append(
            FieldErr("Invalid", f"{path}.{field}", value, "must be greater than or equal to 0")
        )


def _int_or_percent(value: Any, field: str, errs: list[FieldErr]) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            errs.append(FieldErr("Invalid", field, value, "must be greater than or equal to 0"))
        return
    if isinstance(value, str) and re.fullmatch(r"\d+%", value):
        return
    errs.append(
        FieldErr(
            "Invalid",
            field,
            value,
            "a valid percent string must be a numeric string followed by an ending "
            "'%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        )
    )


def validate(kind: str, obj: Obj, old: Obj | None) -> list[FieldErr]:
    """Validation for create (old is None) and update."""
    errs: list[FieldErr] = []
    label_name = kind == "Namespace"
    errs += validate_meta(obj, namespaced=kind not in ("Namespace", "Node"), label_name=label_name)
    raw_spec = obj.get("spec")
    spec: Obj = raw_spec if isinstance(raw_spec, dict) else {}
    if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
        for field in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
            _non_negative(spec, field, errs)
        _validate_selector_template(obj, errs)
        errs += validate_pod_spec((spec.get("template") or {}).get("spec"), "spec.template.spec")
        policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if policy not in (None, "Always"):
            errs.append(
                FieldErr(
                    "NotSupported",
                    "spec.template.spec.restartPolicy",
                    policy,
                    'supported values: "Always"',
                )
            )
    if kind == "Deployment":
        pds = spec.get("progressDeadlineSeconds")
        if isinstance(pds, int) and pds <= int(spec.get("minReadySeconds") or 0):
            errs.append(
                FieldErr(
                    "Invalid",
                    "spec.progressDeadlineSeconds",
                    pds,
                    "must be greater than minReadySeconds",
                )
            )
        ru = ((spec.get("strategy") or {}).get("rollingUpdate")) or {}
        if (spec.get("strategy") or {}).get("type") == "RollingUpdate":
            _int_or_percent(ru.get("maxSurge"), "spec.strategy.rollingUpdate.maxSurge", errs)
            _int_or_percent(
                ru.get("maxUnavailable"), "spec.strategy.rollingUpdate.maxUnavailable", errs
            )
            if ru.get("maxSurge") in (0, "0%") and ru.get("maxUnavailable") in (0, "0%"):
                errs.append(
                    FieldErr(
                        "Invalid",
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        ru.get("maxUnavailable"),
                        "may not be 0 when `maxSurge` is 0",
                    )
                )
        strategy_type = (spec.get("strategy") or {}).get("type")
        if strategy_type not in ("RollingUpdate", "Recreate"):
            errs.append(
                FieldErr(
                    "NotSupported",
                    "spec.strategy.type",
                    strategy_type,
                    'supported values: "Recreate", "RollingUpdate"',
                )
            )
    if kind in ("Job", "CronJob"):
        jspec = spec if kind == "Job" else ((spec.get("jobTemplate") or {}).get("spec") or {})
        prefix = "spec" if kind == "Job" else "spec.jobTemplate.spec"
        for field in ("backoffLimit", "completions", "parallelism"):
            _non_negative(jspec, field, errs, prefix)
        pod_spec = (jspec.get("template") or {}).get("spec")
        errs += validate_pod_spec(pod_spec, f"{prefix}.template.spec")
        policy = (pod_spec or {}).get("restartPolicy") if isinstance(pod_spec, dict) else None
        if policy not in ("OnFailure", "Never"):
            errs.append(
                FieldErr(
                    "NotSupported",
                    f"{prefix}.template.spec.restartPolicy",
                    policy,
                    'supported values: "OnFailure", "Never"',
                )
            )
        if kind == "CronJob" and not spec.get("schedule"):
            errs.append(FieldErr("Required", "spec.schedule"))
        if kind == "CronJob" and spec.get("concurrencyPolicy") not in (
            "Allow",
            "Forbid",
            "Replace",
        ):
            errs.append(
                FieldErr(
                    "NotSupported",
                    "spec.concurrencyPolicy",
                    spec.get("concurrencyPolicy"),
                    'supported values: "Allow", "Forbid", "Replace"',
                )
            )
    if kind == "Pod":
        errs += validate_pod_spec(obj.get("spec"), "spec")
    if kind == "Lease":
        duration = spec.get("leaseDurationSeconds")
        if isinstance(duration, int) and duration <= 0:
            errs.append(
                FieldErr("Invalid", "spec.leaseDurationSeconds", duration, "must be greater than 0")
            )
    if kind == "Event":
        involved = obj.get("involvedObject") or {}
        ns = (obj.get("metadata") or {}).get("namespace")
        if involved.get("namespace") and involved.get("namespace") != ns:
            errs.append(
                FieldErr(
                    "Invalid",
                    "involvedObject.namespace",
                    involved.get("namespace"),
                    "does not match event.namespace",
                )
            )
    if old is not None:
        errs += validate_update(kind, obj, old)
    return errs


def validate_update(kind: str, obj: Obj, old: Obj) -> list[FieldErr]:
    errs: list[FieldErr] = []
    spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
    if kind in ("Deployment", "ReplicaSet", "DaemonSet") and spec.get("selector") != old_spec.get(
        "selector"
    ):
        errs.append(
            FieldErr(
                "Invalid",
                "spec.selector",
                Raw(go_label_selector(spec.get("selector"))),
                "field is immutable",
            )
        )
    if kind == "StatefulSet":
        allowed = {
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        }
        rest = {k: v for k, v in spec.items() if k not in allowed}
        old_rest = {k: v for k, v in old_spec.items() if k not in allowed}
        if rest != old_rest:
            errs.append(
                FieldErr(
                    "Forbidden",
                    "spec",
                    detail="updates to statefulset spec for fields other than 'replicas', "
                    "'ordinals', 'template', 'updateStrategy', "
                    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                )
            )
    if kind == "Job":
        if spec.get("selector") != old_spec.get("selector"):
            errs.append(
                FieldErr(
                    "Invalid",
                    "spec.selector",
                    Raw(go_label_selector(spec.get("selector"))),
                    "field is immutable",
                )
            )
        if spec.get("template") != old_spec.get("template"):
            errs.append(
                FieldErr(
                    "Invalid",
                    "spec.template",
                    Raw("core.PodTemplateSpec{...}"),
                    "field is immutable",
                )
            )
        if spec.get("completions") != old_spec.get("completions"):
            errs.append(
                FieldErr(
                    "Invalid", "spec.completions", spec.get("completions"), "field is immutable"
                )
            )
    if kind == "Pod":
        errs += _validate_pod_update(spec, old_spec)
    return errs


POD_UPDATE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set "
    "to 1 if it was previously negative)"
)


def _validate_pod_update(spec: Obj, old: Obj) -> list[FieldErr]:
    def strip(s: Obj) -> Obj:
        out = {k: v for k, v in s.items() if k not in ("activeDeadlineSeconds", "tolerations")}
        for field in ("containers", "initContainers"):
            if isinstance(out.get(field), list):
                out[field] = [
                    {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                    for c in out[field]
                ]
        return out

    if strip(spec) != strip(old):
        return [FieldErr("Forbidden", "spec", detail=POD_UPDATE_MSG)]
    old_tols = old.get("tolerations") or []
    new_tols = spec.get("tolerations") or []
    if any(t not in new_tols for t in old_tols):
        return [FieldErr("Forbidden", "spec", detail=POD_UPDATE_MSG)]
    return []


def resolve_int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError:
            return 0
        scaled = pct * total
        return -(-scaled // 100) if round_up else scaled // 100
    return 0


def deployment_fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved against spec.replicas, like ResolveFenceposts."""
    spec = d.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type") != "RollingUpdate":
        return 0, 0
    replicas = int(spec.get("replicas") or 0)
    ru = strategy.get("rollingUpdate") or {}
    surge = resolve_int_or_percent(ru.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)
