"""A Prometheus server as a data source: connection settings and a small async client over
prometheus-api-client (imported lazily), with errors mapped to Temporary/Permanent."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from daemon.durations import Duration
from daemon.errors import PermanentError, TemporaryError


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    password_env: str | None = Field(None, description="Env variable holding the password")
    password_file: Path | None = Field(None, description="File holding the password")

    def password(self) -> str:
        if self.password_file is not None:
            return _read_secret(self.password_file, "basic_auth.password_file")
        return os.environ.get(self.password_env or "", "")


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PermanentError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


class PrometheusSource(BaseModel):
    """How to reach one Prometheus server. Secrets come from env or files, never the YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("http://127.0.0.1:9090", pattern=r"^https?://")
    bearer_token_env: str | None = Field(None, description="Env variable holding a bearer token")
    bearer_token_file: Path | None = Field(None, description="File holding a bearer token")
    basic_auth: BasicAuth | None = None
    tls_verify: bool = Field(True, description="Verify the server's TLS certificate")
    ca_file: Path | None = Field(None, description="CA bundle to verify the server with")
    timeout: Duration = Field(10.0, description="Per query")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers")
    consecutive_error_limit: int = Field(
        4, ge=1, description="Query errors in a row before a source-unavailable incident"
    )

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusSource:
        token = self.bearer_token_env is not None or self.bearer_token_file is not None
        if token and self.basic_auth is not None:
            raise ValueError("use a bearer token or basic_auth, not both")
        return self

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        token = None
        if self.bearer_token_file is not None:
            token = _read_secret(self.bearer_token_file, "bearer_token_file")
        elif self.bearer_token_env is not None:
            token = os.environ.get(self.bearer_token_env)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers


@dataclass(frozen=True, kw_only=True)
class Sample:
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, kw_only=True)
class RangeSeries:
    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...] = field(default_factory=tuple)


def _labels(metric: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in metric.items() if k != "__name__"}


def _status(message: str) -> int:
    match = re.search(r"HTTP Status Code (\d+)", message)
    return int(match.group(1)) if match else 0


def _prometheus_error(message: str) -> tuple[str, str]:
    """The `errorType` and `error` fields of Prometheus's JSON error body, which the client
    puts in a repr (`bad_data` is an invalid query or parameter)."""
    match = re.search(r"\((b?(['\"]).*\2)\)\s*$", message, re.S)
    if match:
        try:
            raw = ast.literal_eval(match.group(1))
            body = json.loads(raw)
            return str(body.get("errorType", "")), str(body.get("error", message))
        except (ValueError, SyntaxError, AttributeError):
            return "", message
    return "", message


def _shorten(query: str, limit: int = 200) -> str:
    flat = " ".join(query.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Dependency:
    """What a probe's readings depend on; its repeated failure opens one incident."""

    name: str
    error_limit: int


class PrometheusClient:
    def __init__(self, name: str, source: PrometheusSource) -> None:
        self.name = name
        self.source = source
        self._connect: Any = None

    @property
    def dependency(self) -> Dependency:
        return Dependency(f"prometheus/{self.name}", self.source.consecutive_error_limit)

    def _connection(self) -> Any:
        if self._connect is None:
            from prometheus_api_client import PrometheusConnect
            from urllib3.util.retry import Retry

            src = self.source
            auth = (src.basic_auth.username, src.basic_auth.password()) if src.basic_auth else None
            self._connect = PrometheusConnect(
                url=src.url.rstrip("/"),
                disable_ssl=not src.tls_verify,
                retry=Retry(total=0),  # retries are ours, with backoff on the injected clock
                auth=auth,
                timeout=src.timeout,
            )
            if src.ca_file is not None and src.tls_verify:
                self._connect._session.verify = str(src.ca_file)
        return self._connect

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        where = f"Prometheus {self.name!r}"
        try:
            connect = self._connection()
            connect.headers = self.source.request_headers()  # re-read: tokens may rotate
        except PermanentError as exc:
            raise PermanentError(f"{where}: {exc}") from None
        try:
            return getattr(connect, method)(*args, **kwargs)
        except PrometheusApiClientException as exc:
            status = _status(str(exc))
            kind, detail = _prometheus_error(str(exc))
            if status == 429 or status >= 500:
                raise TemporaryError(f"{where} answered HTTP {status}: {detail}") from None
            if kind == "bad_data" or status == 400:
                query = _shorten(str(args[0])) if args else ""
                raise PermanentError(
                    f"{where}: invalid query (HTTP {status} {kind or 'bad request'}): {detail}; "
                    f"query: {query}"
                ) from None
            raise PermanentError(
                f"{where} rejected the query (HTTP {status}{' ' + kind if kind else ''}): {detail}"
            ) from None
        except requests.exceptions.Timeout:
            raise TemporaryError(f"{where} timed out after {self.source.timeout:g}s") from None
        except requests.exceptions.SSLError as exc:
            raise PermanentError(f"{where}: TLS error: {exc}") from None
        except (requests.exceptions.RequestException, ValueError) as exc:
            raise TemporaryError(f"{where} unreachable: {type(exc).__name__}") from None

    async def instant(self, query: str, at: float) -> list[Sample]:
        """An instant query at `at`; a scalar comes back as one sample without labels."""
        result = await asyncio.to_thread(self._call, "custom_query", query, params={"time": at})
        if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
            return [Sample(labels={}, value=float(result[1]))]  # scalar: [ts, "value"]
        samples = []
        for item in result or []:
            if "values" in item:
                raise PermanentError(
                    f"query returns a range vector; wrap it in a function: {query!r}"
                )
            samples.append(Sample(labels=_labels(item["metric"]), value=float(item["value"][1])))
        return samples

    async def range(self, query: str, start: float, end: float, step: float) -> list[RangeSeries]:
        result = await asyncio.to_thread(
            self._call,
            "custom_query_range",
            query,
            start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC),
            step=f"{step:g}s",
        )
        return [
            RangeSeries(
                labels=_labels(item["metric"]),
                points=tuple((float(t), float(v)) for t, v in item["values"]),
            )
            for item in result or []
        ]
