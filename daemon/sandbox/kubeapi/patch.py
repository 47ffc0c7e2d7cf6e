"""The three PATCH flavours: strategic merge patch, JSON merge patch (RFC 7386) and JSON patch
(RFC 6902)."""

from __future__ import annotations

import json
from typing import Any

from .errors import ApiError, bad_request, unprocessable
from .resources import clone

# patchMergeKey of the well-known list fields (patchStrategy "merge")
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "ports": "containerPort",
}
# lists of scalars merged as sets (patchStrategy "merge" on []string)
PRIMITIVE_MERGE = frozenset({"finalizers"})

_DELETE = object()


def _clean(value: Any) -> Any:
    """Patch content with all ``$`` directives removed."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_clean(v) for v in value if not (isinstance(v, dict) and set(v) == {"$patch"})]
    return value


def strategic_merge(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        raise bad_request(
            "json: cannot unmarshal array into Go value of type map[string]interface {}"
        )
    result = _smp_map(original if isinstance(original, dict) else {}, patch)
    return {} if result is _DELETE else result


def _smp_map(original: dict[str, Any], patch: dict[str, Any]) -> Any:
    directive = patch.get("$patch")
    if directive == "replace":
        return _clean(patch)
    if directive == "delete":
        return _DELETE
    result = dict(original)
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        current = result.get(key)
        if isinstance(value, dict):
            merged = _smp_map(current if isinstance(current, dict) else {}, value)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(key, current if isinstance(current, list) else [], value)
        else:
            result[key] = value
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
    return result


def _smp_list(key: str, original: list[Any], patch: list[Any]) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [
            _clean(p)
            for p in patch
            if not (isinstance(p, dict) and "$patch" in p and set(p) == {"$patch"})
        ]
    if key in PRIMITIVE_MERGE:
        out = list(original)
        for item in patch:
            if item not in out:
                out.append(item)
        return out
    merge_key = MERGE_KEYS.get(key)
    if key == "ports" and not any(
        isinstance(i, dict) and "containerPort" in i for i in [*original, *patch]
    ):
        merge_key = "port"
    if merge_key is None or not all(isinstance(p, dict) for p in patch):
        return list(_clean(patch))
    out = [clone(i) for i in original]
    for item in patch:
        ident = item.get(merge_key)
        index = next(
            (
                i
                for i, cur in enumerate(out)
                if isinstance(cur, dict) and cur.get(merge_key) == ident
            ),
            None,
        )
        if item.get("$patch") == "delete":
            out = [c for c in out if not (isinstance(c, dict) and c.get(merge_key) == ident)]
            continue
        if index is None:
            out.append(_clean(item))
        else:
            merged = _smp_map(out[index], item)
            if merged is _DELETE:
                out.pop(index)
            else:
                out[index] = merged
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------- JSON patch


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise unprocessable(f'invalid JSON pointer: "{path}"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], tok: str, path: str, *, allow_end: bool) -> int:
    if tok == "-" and allow_end:
        return len(container)
    if not tok.isdigit():
        raise unprocessable(f"Unable to access invalid index: {tok}: invalid index referenced")
    idx = int(tok)
    limit = len(container) if allow_end else len(container) - 1
    if idx > limit:
        raise unprocessable(f"Unable to access invalid index: {idx}: invalid index referenced")
    return idx


def _parent(doc: Any, toks: list[str], op: str, path: str) -> Any:
    cur = doc
    for tok in toks[:-1]:
        if isinstance(cur, dict) and tok in cur:
            cur = cur[tok]
        elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        else:
            raise unprocessable(
                f"{op} operation does not apply: doc is missing path: {json.dumps(path)}: "
                "missing value"
            )
    return cur


def _get(doc: Any, path: str, op: str) -> Any:
    toks = _pointer(path)
    if not toks:
        return doc
    parent = _parent(doc, toks, op, path)
    last = toks[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise unprocessable(
                f"{op} operation does not apply: doc is missing key: {path}: missing value"
            )
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, path, allow_end=False)]
    raise unprocessable(f"{op} operation does not apply: doc is missing path: {path}")


def _add(doc: Any, path: str, value: Any, op: str = "add") -> Any:
    toks = _pointer(path)
    if not toks:
        return value
    parent = _parent(doc, toks, op, path)
    last = toks[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), value)
    else:
        raise unprocessable(f"{op} operation does not apply: doc is missing path: {path}")
    return doc


def _remove(doc: Any, path: str, op: str = "remove") -> Any:
    toks = _pointer(path)
    if not toks:
        raise unprocessable("unable to remove the whole document")
    parent = _parent(doc, toks, op, path)
    last = toks[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise unprocessable(f"unable to remove nonexistent key: {last}: missing value")
        del parent[last]
    elif isinstance(parent, list):
        parent.pop(_index(parent, last, path, allow_end=False))
    else:
        raise unprocessable(f"{op} operation does not apply: doc is missing path: {path}")
    return doc


def json_patch(document: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = clone(document)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op:
            raise bad_request("invalid JSON patch operation")
        kind = op["op"]
        path = op.get("path", "")
        if not isinstance(path, str):
            raise bad_request("invalid JSON patch path")
        if kind == "add":
            doc = _add(doc, path, clone(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path, "replace")
            toks = _pointer(path)
            if not toks:
                doc = clone(op.get("value"))
            else:
                parent = _parent(doc, toks, "replace", path)
                if isinstance(parent, list):
                    parent[_index(parent, toks[-1], path, allow_end=False)] = clone(op.get("value"))
                else:
                    parent[toks[-1]] = clone(op.get("value"))
        elif kind == "test":
            actual = _get(doc, path, "test")
            if actual != op.get("value"):
                raise unprocessable(f"testing value {path} failed: test failed")
        elif kind == "move":
            source = op.get("from", "")
            value = clone(_get(doc, source, "move"))
            doc = _remove(doc, source, "move")
            doc = _add(doc, path, value, "move")
        elif kind == "copy":
            value = clone(_get(doc, op.get("from", ""), "copy"))
            doc = _add(doc, path, value, "copy")
        else:
            raise bad_request(f"Unexpected kind: {kind}")
    return doc


PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def apply_patch(content_type: str, document: dict[str, Any], patch: Any) -> Any:
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/json-patch+json":
        return json_patch(document, patch)
    if ctype == "application/merge-patch+json":
        if not isinstance(patch, dict):
            raise bad_request(
                "json: cannot unmarshal array into Go value of type map[string]interface {}"
            )
        return merge_patch(document, patch)
    if ctype in ("application/strategic-merge-patch+json", "application/apply-patch+yaml"):
        return strategic_merge(document, patch)
    raise ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(PATCH_TYPES),
    )
