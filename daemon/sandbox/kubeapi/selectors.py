"""Label selectors (string and LabelSelector forms) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ApiError, bad_request

# (key, operator, values); operator in "=", "!=", "in", "notin", "exists", "!exists"
Requirement = tuple[str, str, tuple[str, ...]]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET_RE = re.compile(rf"^({_KEY})\s+(in|notin)\s*\((.*)\)$")
_EQ_RE = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)$")
_EXISTS_RE = re.compile(rf"^({_KEY})$")
_NOT_EXISTS_RE = re.compile(rf"^!\s*({_KEY})$")


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text or not text.strip():
        return []
    reqs: list[Requirement] = []
    for part in _split_top(text.strip()):
        if not part:
            raise bad_request(
                f"unable to parse requirement: found '', expected: identifier in {text!r}"
            )
        if m := _SET_RE.match(part):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append((m.group(1), m.group(2), values))
        elif m := _EQ_RE.match(part):
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append((m.group(1), op, (m.group(3),)))
        elif m := _NOT_EXISTS_RE.match(part):
            reqs.append((m.group(1), "!exists", ()))
        elif m := _EXISTS_RE.match(part):
            reqs.append((m.group(1), "exists", ()))
        else:
            raise bad_request(f"unable to parse requirement: invalid label selector: {part!r}")
    return reqs


def from_label_selector(selector: Mapping[str, Any] | None) -> list[Requirement]:
    """Requirements of a metav1.LabelSelector (matchLabels + matchExpressions)."""
    if not selector:
        return []
    reqs: list[Requirement] = [
        (k, "=", (str(v),)) for k, v in sorted((selector.get("matchLabels") or {}).items())
    ]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expr in selector.get("matchExpressions") or []:
        reqs.append(
            (
                expr.get("key", ""),
                ops.get(expr.get("operator", ""), "in"),
                tuple(expr.get("values") or ()),
            )
        )
    return reqs


def matches(reqs: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, values in reqs:
        present = key in labels
        if op == "=":
            if not present or labels[key] != values[0]:
                return False
        elif op == "!=":
            if present and labels[key] == values[0]:
                return False
        elif op == "in":
            if not present or labels[key] not in values:
                return False
        elif op == "notin":
            if present and labels[key] in values:
                return False
        elif op == "exists":
            if not present:
                return False
        elif op == "!exists" and present:
            return False
    return True


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """The string form of a LabelSelector, as Scale.status.selector shows it."""
    parts: list[str] = []
    for key, op, values in from_label_selector(selector):
        if op == "=":
            parts.append(f"{key}={values[0]}")
        elif op in ("in", "notin"):
            parts.append(f"{key} {op} ({','.join(sorted(values))})")
        elif op == "exists":
            parts.append(key)
        else:
            parts.append(f"!{key}")
    return ",".join(parts)


def go_label_selector(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector printed like Go's %#v (for immutability errors)."""
    sel = selector or {}
    labels = ", ".join(f'"{k}":"{v}"' for k, v in sorted((sel.get("matchLabels") or {}).items()))
    exprs = sel.get("matchExpressions")
    exprs_text = (
        "[]v1.LabelSelectorRequirement(nil)"
        if not exprs
        else (
            "[]v1.LabelSelectorRequirement{"
            + ", ".join(
                f'v1.LabelSelectorRequirement{{Key:"{e.get("key")}", '
                f'Operator:"{e.get("operator")}", Values:[]string{{'
                + ", ".join(f'"{v}"' for v in e.get("values") or [])
                + "}}"
                for e in exprs
            )
            + "}"
        )
    )
    return (
        f"v1.LabelSelector{{MatchLabels:map[string]string{{{labels}}}, "
        f"MatchExpressions:{exprs_text}}}"
    )


# --------------------------------------------------------------------------- field selectors

FieldReq = tuple[str, bool, str]  # (field, equal?, value)


def _path(*keys: str) -> Callable[[Mapping[str, Any]], str]:
    def get(obj: Mapping[str, Any]) -> str:
        cur: Any = obj
        for key in keys:
            if not isinstance(cur, Mapping):
                return ""
            cur = cur.get(key)
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)

    return get


_COMMON: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}

FIELDS: dict[str, dict[str, Callable[[Mapping[str, Any]], str]]] = {
    "Pod": {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": _path("spec", "hostNetwork"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "Event": {
        "involvedObject.kind": _path("involvedObject", "kind"),
        "involvedObject.namespace": _path("involvedObject", "namespace"),
        "involvedObject.name": _path("involvedObject", "name"),
        "involvedObject.uid": _path("involvedObject", "uid"),
        "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    },
    "Namespace": {"status.phase": _path("status", "phase")},
    "Node": {"spec.unschedulable": _path("spec", "unschedulable")},
    "Job": {"status.successful": _path("status", "succeeded")},
    "ReplicaSet": {"status.replicas": _path("status", "replicas")},
}


def parse_field_selector(kind: str, text: str | None) -> list[FieldReq]:
    if not text or not text.strip():
        return []
    known = {**_COMMON, **FIELDS.get(kind, {})}
    reqs: list[FieldReq] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            field, value = part.split("!=", 1)
            equal = False
        elif "==" in part:
            field, value = part.split("==", 1)
            equal = True
        elif "=" in part:
            field, value = part.split("=", 1)
            equal = True
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field = field.strip()
        if field not in known:
            raise bad_request(f"field label not supported: {field}")
        reqs.append((field, equal, value.strip()))
    return reqs


def field_matches(kind: str, reqs: list[FieldReq], obj: Mapping[str, Any]) -> bool:
    known = {**_COMMON, **FIELDS.get(kind, {})}
    for field, equal, value in reqs:
        if (known[field](obj) == value) != equal:
            return False
    return True


def field_value(reqs: list[FieldReq], field: str) -> str | None:
    """The value an equality requirement pins ``field`` to, if any."""
    for f, equal, value in reqs:
        if f == field and equal:
            return value
    return None


__all__ = [
    "ApiError",
    "FieldReq",
    "Requirement",
    "field_matches",
    "field_value",
    "from_label_selector",
    "go_label_selector",
    "matches",
    "parse_field_selector",
    "parse_label_selector",
    "selector_string",
]
