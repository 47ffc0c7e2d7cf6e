"""How to reach one Kubernetes cluster, and an async client over the official `kubernetes`
SDK (imported lazily) that returns plain JSON objects and maps API errors to outcomes:

- 404 → NotFound (permanent: the target is gone; escalate)
- 403 → Forbidden (permanent; names the missing RBAC verb and resource)
- 409 → Conflict (temporary; callers re-read and retry)
- 429, 5xx, connection errors, timeouts → TemporaryError (tenacity backoff, honours Retry-After)
- anything else (400, 401, 422) → PermanentError with the API server's own message
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from daemon.durations import Duration
from daemon.errors import EscalateError, PermanentError, TemporaryError

T = TypeVar("T")

API = Literal["core", "apps", "batch"]
_APIS = {"core": "CoreV1Api", "apps": "AppsV1Api", "batch": "BatchV1Api"}
SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"


class KubernetesCluster(BaseModel):
    """How to reach one cluster. With nothing set: in-cluster config when running in a pod,
    else the kubeconfig ($KUBECONFIG or ~/.kube/config) and its current context."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    in_cluster: bool | None = Field(
        None, description="Use the pod's service account (default: when running in a pod)"
    )
    kubeconfig: Path | None = Field(None, description="kubeconfig file (default: $KUBECONFIG)")
    context: str | None = Field(None, description="kubeconfig context (default: current)")
    host: str | None = Field(
        None, pattern=r"^https?://", description="API server URL, with token_env/token_file"
    )
    token_env: str | None = Field(None, description="Env variable holding a bearer token")
    token_file: Path | None = Field(None, description="File holding a bearer token")
    ca_file: Path | None = Field(None, description="CA bundle for the API server (with host)")
    tls_verify: bool = Field(True, description="Verify the API server's certificate (with host)")
    timeout: Duration = Field(15.0, description="Per API request")
    consecutive_error_limit: int = Field(
        4, ge=1, description="Failed checks in a row before a source-unavailable incident"
    )
    conflict_retries: int = Field(
        5, ge=0, le=20, description="Re-read and retry this often on a 409 conflict"
    )

    @model_validator(mode="after")
    def _one_way(self) -> KubernetesCluster:
        explicit = self.host is not None
        if explicit and (self.kubeconfig is not None or self.context is not None):
            raise ValueError("use `host` (with a token) or `kubeconfig`/`context`, not both")
        if explicit and self.in_cluster:
            raise ValueError("use `host` or `in_cluster`, not both")
        if (self.token_env or self.token_file) and not explicit:
            raise ValueError("`token_env`/`token_file` need `host`")
        return self

    def mode(self) -> str:
        if self.host is not None:
            return "host"
        if self.in_cluster or (self.in_cluster is None and os.environ.get(SERVICE_HOST_ENV)):
            return "in-cluster"
        return "kubeconfig"

    def token(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip() or None
        return os.environ.get(self.token_env) if self.token_env else None


class NotFound(EscalateError):
    """The object is gone (404)."""


class Forbidden(EscalateError):
    """opsmedic lacks an RBAC permission (403)."""


class Conflict(TemporaryError):
    """The object changed since it was read (409), or a name is taken."""

    def __init__(self, message: str, *, already_exists: bool = False) -> None:
        super().__init__(message)
        self.already_exists = already_exists


_FORBIDDEN = re.compile(
    r'cannot (?P<verb>[\w-]+) resource "(?P<resource>[^"]+)" in API group "(?P<group>[^"]*)"'
    r'(?: in the namespace "(?P<ns>[^"]+)")?'
)


def _status_message(body: Any) -> tuple[str, str]:
    try:
        status = json.loads(body)
        return str(status.get("message", "")), str(status.get("reason", ""))
    except (TypeError, ValueError, AttributeError):
        return (body.decode() if isinstance(body, bytes) else str(body or ""))[:500], ""


def api_error(status: int, body: Any, headers: Any, what: str) -> Exception:
    """The opsmedic error for an API server answer with this HTTP status."""
    message, reason = _status_message(body)
    detail = message or reason or f"HTTP {status}"
    if status == 404:
        return NotFound(f"{what}: not found ({detail}); the target may have been deleted")
    if status == 403:
        match = _FORBIDDEN.search(message)
        if match:
            group = match["group"] or "core"
            where = f" in namespace {match['ns']}" if match["ns"] else " cluster-wide"
            return Forbidden(
                f"{what}: forbidden: opsmedic may not `{match['verb']}` {match['resource']} "
                f"(API group {group}){where}; grant that verb in its Role "
                f"(see deploy/kubernetes/rbac.yaml). API server: {message}"
            )
        return Forbidden(f"{what}: forbidden: {detail}")
    if status == 409:
        return Conflict(f"{what}: conflict: {detail}", already_exists=reason == "AlreadyExists")
    if status == 429 or status >= 500:
        retry_after = None
        raw = (headers or {}).get("Retry-After") if hasattr(headers, "get") else None
        if raw:
            try:
                retry_after = float(raw)
            except ValueError:
                retry_after = None
        return TemporaryError(f"{what}: HTTP {status}: {detail}", retry_after=retry_after)
    if status == 401:
        return PermanentError(f"{what}: unauthorized: the token was rejected ({detail})")
    return PermanentError(f"{what}: HTTP {status}: {detail}")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class KubeClient:
    """One cluster. Methods run the blocking SDK in a worker thread and return plain JSON."""

    def __init__(self, name: str, cluster: KubernetesCluster) -> None:
        self.name = name
        self.cluster = cluster
        self._apis: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _api_client(self) -> Any:
        from kubernetes import client, config
        from urllib3.util.retry import Retry

        c = self.cluster
        configuration = client.Configuration()
        mode = c.mode()
        if mode == "host":
            configuration.host = str(c.host)
            token = c.token()
            if token:
                configuration.api_key = {"authorization": f"Bearer {token}"}
            configuration.verify_ssl = c.tls_verify
            if c.ca_file is not None:
                configuration.ssl_ca_cert = str(c.ca_file)
        elif mode == "in-cluster":
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=str(c.kubeconfig) if c.kubeconfig is not None else None,
                context=c.context,
                client_configuration=configuration,
            )
        # urllib3 would otherwise retry 429/503 itself, sleeping in real time; retries are ours
        configuration.retries = Retry(total=0)
        return client.ApiClient(configuration)

    def api(self, which: API) -> Any:
        with self._lock:
            if not self._apis:
                from kubernetes import client

                try:
                    api_client = self._api_client()
                except Exception as exc:  # noqa: BLE001 - config errors come in many types
                    raise PermanentError(
                        f"Kubernetes cluster {self.name!r} ({self.cluster.mode()}): "
                        f"cannot load its configuration: {exc}"
                    ) from None
                self._apis = {k: getattr(client, v)(api_client) for k, v in _APIS.items()}
            return self._apis[which]

    def _call(self, which: API, method: str, what: str, kwargs: dict[str, Any]) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        api = self.api(which)
        where = f"{what} (cluster {self.name!r})"
        try:
            response = getattr(api, method)(
                _preload_content=False, _request_timeout=self.cluster.timeout, **kwargs
            )
        except ApiException as exc:
            raise api_error(exc.status or 0, exc.body, exc.headers, where) from None
        except HTTPError as exc:
            raise TemporaryError(f"{where}: API server unreachable: {exc}") from None
        except OSError as exc:
            raise TemporaryError(f"{where}: {exc}") from None
        data = response.data
        if "json" not in (response.headers.get("Content-Type") or "application/json"):
            return data.decode("utf-8", "replace")  # pod logs are text/plain
        return json.loads(data) if data else {}

    async def call(self, which: API, method: str, what: str, **kwargs: Any) -> Any:
        """Call an SDK method (e.g. `call("apps", "read_namespaced_deployment", ...)`)."""
        return await asyncio.to_thread(self._call, which, method, what, kwargs)

    async def on_conflict(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run read-modify-write `attempt`, re-reading and retrying at once on a 409."""
        for _ in range(self.cluster.conflict_retries):
            try:
                return await attempt()
            except Conflict as exc:
                if exc.already_exists:
                    raise
        return await attempt()
