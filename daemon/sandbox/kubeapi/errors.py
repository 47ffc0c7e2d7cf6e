"""API errors rendered as real Kubernetes ``Status`` bodies, with the API server's own wording."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .resources import Resource

USER = "system:serviceaccount:opsmedic:opsmedic"

_NO_VALUE = object()


@dataclass(frozen=True)
class Raw:
    """A value already formatted the way Go's ``%#v`` would print it."""

    text: str


def go_value(value: Any) -> str:
    """Format a field value like k8s.io/apimachinery field errors do."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)}:{go_value(v)}" for k, v in sorted(value.items()))
        return "map[string]interface {}{" + inner + "}"
    return json.dumps(value, sort_keys=True)


_TYPE_TEXT = {
    "Required": ("FieldValueRequired", "Required value"),
    "Invalid": ("FieldValueInvalid", "Invalid value"),
    "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
    "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
    "Forbidden": ("FieldValueForbidden", "Forbidden"),
    "NotFound": ("FieldValueNotFound", "Not found"),
    "TooLong": ("FieldValueTooLong", "Too long"),
}


@dataclass(frozen=True)
class FieldErr:
    """One entry of a field.ErrorList: ``spec.replicas: Invalid value: -1: must be ...``."""

    type: str
    field: str
    value: Any = _NO_VALUE
    detail: str = ""

    def body(self) -> str:
        text = _TYPE_TEXT[self.type][1]
        if self.type in ("Invalid", "Duplicate", "NotSupported", "NotFound"):
            if self.value is not _NO_VALUE:
                text = f"{text}: {go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict[str, str]:
        return {"reason": _TYPE_TEXT[self.type][0], "message": self.body(), "field": self.field}


@dataclass
class ApiError(Exception):
    """An error the API server answers with a ``Status`` body."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(res: Resource | None, name: str | None, kind: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if res is not None and res.group:
        details["group"] = res.group
    if res is not None:
        details["kind"] = kind or res.plural
    return details


def _named(res: Resource, name: str | None) -> str:
    return f"{res.qualified} {json.dumps(name)}" if name else res.qualified


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f"{_named(res, name)} not found", _details(res, name))


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(res: Resource, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f"{_named(res, name)} already exists", _details(res, name)
    )


MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def conflict(res: Resource, name: str, why: str = MODIFIED) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f"Operation cannot be fulfilled on {_named(res, name)}: {why}",
        _details(res, name),
    )


def invalid(res: Resource, name: str, errs: list[FieldErr], kind: str | None = None) -> ApiError:
    qualified_kind = kind or res.qualified_kind
    if len(errs) == 1:
        listing = str(errs[0])
    else:
        listing = "[" + ", ".join(str(e) for e in errs) + "]"
    details: dict[str, Any] = {"name": name, **({"group": res.group} if res.group else {})}
    details["kind"] = qualified_kind.split(".", 1)[0]
    details["causes"] = [e.cause() for e in errs]
    return ApiError(
        422, "Invalid", f"{qualified_kind} {json.dumps(name)} is invalid: {listing}", details
    )


def unprocessable(message: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        {"causes": [{"message": message}]},
    )


def forbidden(
    res: Resource | None,
    name: str | None,
    verb: str,
    resource: str,
    group: str,
    namespace: str | None,
) -> ApiError:
    where = f"in the namespace {json.dumps(namespace)}" if namespace else "at the cluster scope"
    why = (
        f"User {json.dumps(USER)} cannot {verb} resource {json.dumps(resource)} "
        f"in API group {json.dumps(group)} {where}"
    )
    qualified = res.qualified if res is not None else resource
    subject = f"{qualified} {json.dumps(name)}" if name else qualified
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", _details(res, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unsupported_media(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def internal(message: str) -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )


def injected(code: int, res: Resource, name: str | None, retry_after: int | None) -> ApiError:
    """The error a fault-injection rule answers with."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if code == 409:
        err = conflict(res, name or "")
    elif code == 429:
        details: dict[str, Any] = {}
        if retry_after is not None:
            details["retryAfterSeconds"] = retry_after
        err = ApiError(
            429, "TooManyRequests", "Too many requests, please try again later.", details
        )
    elif code == 500:
        err = internal("injected fault")
    elif code == 503:
        err = ApiError(
            503, "ServiceUnavailable", "the server is currently unable to handle the request"
        )
        if retry_after is not None:
            err.details = {"retryAfterSeconds": retry_after}
    elif code == 504:
        err = ApiError(
            504,
            "Timeout",
            "the server was unable to return a response in the time "
            "allotted, but may still be processing the request",
        )
    elif code == 404:
        err = not_found(res, name or "")
    elif code == 403:
        err = ApiError(403, "Forbidden", "forbidden: injected fault", _details(res, name))
    elif code == 401:
        err = unauthorized()
    elif code == 400:
        err = bad_request("injected fault")
    else:
        err = ApiError(code, "Unknown", f"injected fault (HTTP {code})")
    err.headers = {**err.headers, **headers}
    return err
