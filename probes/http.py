"""`http` probe: status code, latency, and an optional check of a value in a JSON body."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from daemon.durations import Duration
from daemon.httpclient import Unreachable, request
from daemon.redact import DEFAULT as REDACTOR
from probes.base import PROBES, Outcome, ProbeConfig, ProbeContext, ProbeKind, Reading


def _as_list(value: Any) -> Any:
    """`expect_status: 200` means `[200]`."""
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


class HttpProbeConfig(ProbeConfig):
    kind: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://", description="URL to request")
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: Annotated[
        list[Annotated[int, Field(ge=100, le=599)]],
        BeforeValidator(_as_list),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 100, "maximum": 599},
                    {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 100, "maximum": 599},
                    },
                ]
            }
        ),
    ] = Field(
        default_factory=lambda: list(range(200, 400)),
        description="Status code or list of codes that count as healthy (default: 2xx and 3xx)",
    )
    max_latency: Duration | None = Field(None, description="Slower responses are a breach")
    json_path: str | None = Field(
        None, description="Dotted path into a JSON body, e.g. `status.db` or `items.0.state`"
    )
    json_equals: Any = Field(None, description="Expected value at `json_path`")
    unreachable: Literal["breach", "error"] = Field(
        "breach", description="Whether a connection failure is a breach (target down) or an error"
    )


def _dig(document: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        elif isinstance(document, dict) and part in document:
            document = document[part]
        else:
            raise KeyError(path)
    return document


class HttpProbe:
    def __init__(self, config: HttpProbeConfig, context: ProbeContext) -> None:
        self.config = config

    async def check(self) -> list[Reading]:
        cfg = self.config
        labels = {"url": REDACTOR.text(cfg.url)}  # labels are stored and shown: no password
        try:
            resp = await request(cfg.method, cfg.url, headers=cfg.headers, timeout=cfg.timeout)
        except Unreachable as exc:
            if cfg.unreachable == "error":
                raise
            detail = REDACTOR.text(str(exc))
            return [
                Reading(
                    outcome=Outcome.BREACH,
                    labels=labels,
                    message=f"unreachable ({exc.reason}): {detail}",
                    evidence={"unreachable": {"reason": exc.reason, "detail": detail}},
                )
            ]
        evidence: dict[str, Any] = {"status": resp.status, "latency_seconds": resp.elapsed}
        problems = []
        if resp.status not in cfg.expect_status:
            problems.append(f"status {resp.status}")
        if cfg.max_latency is not None and resp.elapsed > cfg.max_latency:
            problems.append(f"latency {resp.elapsed:.3f}s > {cfg.max_latency:g}s")
        if cfg.json_path is not None:
            try:
                found = _dig(json.loads(resp.body), cfg.json_path)
            except (ValueError, KeyError):
                problems.append(f"no JSON value at {cfg.json_path}")
            else:
                evidence["json_value"] = found
                if cfg.json_equals is not None and found != cfg.json_equals:
                    problems.append(f"{cfg.json_path} is {found!r}, expected {cfg.json_equals!r}")
        return [
            Reading(
                outcome=Outcome.BREACH if problems else Outcome.OK,
                labels=labels,
                value=resp.elapsed,
                message="; ".join(problems) or f"status {resp.status} in {resp.elapsed:.3f}s",
                evidence=evidence,
            )
        ]


PROBES.register("http", ProbeKind(HttpProbeConfig, HttpProbe))
