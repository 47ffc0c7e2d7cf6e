"""`http` action: call a webhook (restart endpoints, job triggers, CI pipelines)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from daemon.actions.base import ACTIONS, ActionContext, ActionKind, ActionParams, ActionResult
from daemon.diagnosis.causes import RERUN
from daemon.durations import Duration
from daemon.errors import TemporaryError
from daemon.httpclient import request


class HttpParams(ActionParams):
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json", description="JSON body to send")
    timeout: Duration = 30.0
    expect_status: list[int] = Field(
        default_factory=lambda: list(range(200, 300)), description="Statuses that mean success"
    )


class HttpAction:
    async def run(self, params: HttpParams, context: ActionContext) -> ActionResult:
        headers = {"Idempotency-Key": context.idempotency_key} | params.headers
        body = None
        if params.json_body is not None:
            body = json.dumps(params.json_body).encode()
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        resp = await request(
            params.method, params.url, headers=headers, body=body, timeout=params.timeout
        )
        if resp.status >= 500 or resp.status == 429:
            raise TemporaryError(f"{params.method} {params.url} answered HTTP {resp.status}")
        return ActionResult(
            ok=resp.status in params.expect_status,
            message=f"HTTP {resp.status}",
            data={"status": resp.status, "body": resp.text()[:1000]},
        )


ACTIONS.register("http", ActionKind(HttpParams, HttpAction, RERUN))
