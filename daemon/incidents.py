"""The incident log: SQLite via sqlite-utils (WAL). IncidentStore is its only writer."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlite_utils

from daemon.diagnosis.history import PastAction, PastIncident
from daemon.errors import PermanentError

SCHEMA_VERSION = 1


class Status(StrEnum):
    OPEN = "open"  # firing; the responder is (or will be) working on it
    ESCALATED = "escalated"  # handed to humans; still open until the target recovers
    RESOLVED = "resolved"


class Resolution(StrEnum):
    AUTO_REMEDIATED = "auto-remediated"  # an action ran and verification passed
    RECOVERED = "recovered"  # the probe recovered without a (verified) action
    RECOVERED_AFTER_ESCALATION = "recovered-after-escalation"


@dataclass(frozen=True, kw_only=True)
class Incident:
    id: int
    fingerprint: str
    playbook: str
    labels: Mapping[str, str]
    severity: str
    status: Status
    summary: str
    value: float | None
    opened_at: float
    updated_at: float
    resolved_at: float | None = None
    resolution: str | None = None
    escalated_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.status is not Status.RESOLVED


@dataclass(frozen=True, kw_only=True)
class Event:
    id: int
    incident_id: int
    at: float
    kind: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


def _incident(row: Mapping[str, Any]) -> Incident:
    return Incident(
        id=row["id"],
        fingerprint=row["fingerprint"],
        playbook=row["playbook"],
        labels=json.loads(row["labels"]),
        severity=row["severity"],
        status=Status(row["status"]),
        summary=row["summary"],
        value=row["value"],
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        resolved_at=row["resolved_at"],
        resolution=row["resolution"],
        escalated_at=row["escalated_at"],
    )


def _event(row: Mapping[str, Any]) -> Event:
    return Event(
        id=row["id"],
        incident_id=row["incident_id"],
        at=row["at"],
        kind=row["kind"],
        message=row["message"],
        data=json.loads(row["data"]),
    )


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


class IncidentStore:
    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.exists():
                raise PermanentError(f"no incident log at {self.path}")
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=10, isolation_level=None)
        self.db = sqlite_utils.Database(conn)
        if not readonly:
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        self._check_version()

    def close(self) -> None:
        self.db.conn.close()

    def _migrate(self) -> None:
        if "meta" not in self.db.table_names():
            self.db.table("meta").insert(
                {"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key"
            )
        if "incidents" not in self.db.table_names():
            self.db.table("incidents").create(
                {
                    "id": int,
                    "fingerprint": str,
                    "playbook": str,
                    "labels": str,
                    "severity": str,
                    "status": str,
                    "summary": str,
                    "value": float,
                    "opened_at": float,
                    "updated_at": float,
                    "resolved_at": float,
                    "resolution": str,
                    "escalated_at": float,
                },
                pk="id",
                not_null={"fingerprint", "playbook", "labels", "status", "opened_at"},
            )
            self.db.table("incidents").create_index(["fingerprint", "status"])
        if "events" not in self.db.table_names():
            self.db.table("events").create(
                {
                    "id": int,
                    "incident_id": int,
                    "at": float,
                    "kind": str,
                    "message": str,
                    "data": str,
                },
                pk="id",
                foreign_keys=[("incident_id", "incidents", "id")],
                not_null={"incident_id", "at", "kind"},
            )
            self.db.table("events").create_index(["incident_id"])
            self.db.table("events").create_index(["kind", "at"])
        if "llm_calls" not in self.db.table_names():  # added with LLM agents; older logs gain it
            self.db.table("llm_calls").create(
                {
                    "id": int,
                    "incident_id": int,
                    "at": float,
                    "agent": str,
                    "provider": str,
                    "model": str,
                    "input_tokens": int,
                    "output_tokens": int,
                    "cost_usd": float,
                    "latency_s": float,
                    "prompt_digest": str,
                    "tools": str,
                    "decision": str,
                    "valid": int,
                    "error": str,
                },
                pk="id",
                foreign_keys=[("incident_id", "incidents", "id")],
                not_null={"incident_id", "at", "agent"},
            )
            self.db.table("llm_calls").create_index(["incident_id"])
            self.db.table("llm_calls").create_index(["at"])

    def _check_version(self) -> None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            raise PermanentError(f"{self.path} is not an opsmedic incident log") from None
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise PermanentError(
                f"{self.path} has schema version {version}; this opsmedic reads up to "
                f"{SCHEMA_VERSION}: upgrade opsmedic"
            )

    # --- reads ---------------------------------------------------------------------------

    def get(self, incident_id: int) -> Incident | None:
        rows = list(self.db.table("incidents").rows_where("id = ?", [incident_id]))
        return _incident(rows[0]) if rows else None

    def open_for(self, fingerprint: str) -> Incident | None:
        rows = list(
            self.db.table("incidents").rows_where(
                "fingerprint = ? AND status != ?",
                [fingerprint, Status.RESOLVED.value],
                order_by="id DESC",
                limit=1,
            )
        )
        return _incident(rows[0]) if rows else None

    def incidents(
        self,
        *,
        status: Status | None = None,
        playbook: str | None = None,
        fingerprint: str | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        where, args = [], []
        if fingerprint is not None:
            where.append("fingerprint = ?")
            args.append(fingerprint)
        if status is not None:
            where.append("status = ?")
            args.append(status.value)
        if playbook is not None:
            where.append("playbook = ?")
            args.append(playbook)
        rows = self.db.table("incidents").rows_where(
            " AND ".join(where) or None, args, order_by="id DESC", limit=limit
        )
        return [_incident(r) for r in rows]

    def open_incidents(self) -> list[Incident]:
        rows = self.db.table("incidents").rows_where(
            "status != ?", [Status.RESOLVED.value], order_by="id"
        )
        return [_incident(r) for r in rows]

    def events(self, incident_id: int, *, kind: str | None = None) -> list[Event]:
        args: list[Any]
        where, args = "incident_id = ?", [incident_id]
        if kind is not None:
            where, args = where + " AND kind = ?", [*args, kind]
        rows = self.db.table("events").rows_where(where, args, order_by="id")
        return [_event(r) for r in rows]

    def action_attempts(self, incident_id: int) -> Counter[str]:
        """How many times each action id was started for this incident (crashes included)."""
        rows = self.db.execute(
            "SELECT json_extract(data, '$.action') FROM events "
            "WHERE incident_id = ? AND kind = 'action_started'",
            [incident_id],
        ).fetchall()
        return Counter(r[0] for r in rows)

    def unfinished_action(self, incident_id: int) -> Event | None:
        """The `action_started` event of an attempt whose result was never recorded (the
        daemon stopped or crashed while it ran), if the incident's last attempt is one."""
        last = None
        for event in self.events(incident_id):
            if event.kind == "action_started":
                last = event
            elif event.kind in ("action_finished", "action_failed"):
                last = None
        return last

    def last_action(self, fingerprint: str, *, other_than: int) -> Event | None:
        """The latest action started on this target in another incident (for cooldowns)."""
        rows = self.db.execute(
            "SELECT e.* FROM events e JOIN incidents i ON i.id = e.incident_id "
            "WHERE i.fingerprint = ? AND e.incident_id != ? AND e.kind = 'action_started' "
            "ORDER BY e.at DESC LIMIT 1",
            [fingerprint, other_than],
        )
        columns = [d[0] for d in rows.description]
        row = rows.fetchone()
        return _event(dict(zip(columns, row, strict=True))) if row else None

    def history(self, fingerprint: str, *, since: float, other_than: int) -> list[PastIncident]:
        """Earlier incidents of this target opened since `since`, newest first, with the
        actions that ran in them (for the history causes)."""
        rows = self.db.execute(
            "SELECT i.id, i.opened_at, i.resolution, e.at, e.kind, e.data FROM incidents i "
            "LEFT JOIN events e ON e.incident_id = i.id AND e.kind IN "
            "('action_started', 'action_finished', 'action_failed') "
            "WHERE i.fingerprint = ? AND i.id != ? AND i.opened_at >= ? ORDER BY i.id DESC, e.id",
            [fingerprint, other_than, since],
        ).fetchall()
        incidents: dict[int, tuple[float, str | None]] = {}
        kinds: dict[tuple[int, Any], str] = {}
        actions: dict[int, list[PastAction]] = {}
        for incident_id, opened_at, resolution, at, kind, data in rows:
            incidents.setdefault(incident_id, (opened_at, resolution))
            actions.setdefault(incident_id, [])
            if kind is None:
                continue
            event = json.loads(data)
            key = (incident_id, event.get("attempt"))
            if kind == "action_started":
                kinds[key] = event.get("uses", "")
            else:
                actions[incident_id].append(
                    PastAction(
                        action=event.get("action", ""),
                        uses=kinds.get(key, ""),
                        ok=bool(event.get("ok")),
                        at=at,
                    )
                )
        return [
            PastIncident(id=i, opened_at=o, resolution=r, actions=tuple(actions[i]))
            for i, (o, r) in incidents.items()
        ]

    def llm_calls(self, incident_id: int) -> list[dict[str, Any]]:
        """The incident's model calls (the audit trail), oldest first."""
        if "llm_calls" not in self.db.table_names():  # a read-only log from before LLM agents
            return []
        rows = self.db.table("llm_calls").rows_where(
            "incident_id = ?", [incident_id], order_by="id"
        )
        return [
            {**r, "tools": json.loads(r["tools"] or "[]"), "valid": bool(r["valid"])} for r in rows
        ]

    def llm_spend(self, *, incident_id: int | None = None, since: float | None = None) -> float:
        """USD spent on model calls for one incident, or since a time."""
        if "llm_calls" not in self.db.table_names():
            return 0.0
        where, args = ["1 = 1"], list[Any]()
        if incident_id is not None:
            where.append("incident_id = ?")
            args.append(incident_id)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        sql = f"SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls WHERE {' AND '.join(where)}"  # noqa: S608 - fixed clauses
        return float(self.db.execute(sql, args).fetchone()[0])

    def llm_usage(self, *, since: float) -> list[dict[str, Any]]:
        """Model calls since a time, per UTC day, agent and model: calls, tokens, cost."""
        if "llm_calls" not in self.db.table_names():
            return []
        rows = self.db.execute(
            "SELECT date(at, 'unixepoch') AS day, agent, model, COUNT(*) AS calls, "
            "SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, "
            "SUM(cost_usd) AS cost_usd, COUNT(DISTINCT incident_id) AS incidents, "
            "SUM(1 - valid) AS invalid FROM llm_calls WHERE at >= ? "
            "GROUP BY day, agent, model ORDER BY day DESC, cost_usd DESC",
            [since],
        )
        columns = [d[0] for d in rows.description]
        return [dict(zip(columns, r, strict=True)) for r in rows.fetchall()]

    # --- writes --------------------------------------------------------------------------

    def open(
        self,
        *,
        fingerprint: str,
        playbook: str,
        labels: Mapping[str, str],
        severity: str,
        summary: str,
        value: float | None,
        at: float,
    ) -> tuple[Incident, bool]:
        """Open an incident, or return the open one with this fingerprint (deduplication)."""
        existing = self.open_for(fingerprint)
        if existing is not None:
            return existing, False
        table = self.db.table("incidents")
        table.insert(
            {
                "fingerprint": fingerprint,
                "playbook": playbook,
                "labels": _json(dict(labels)),
                "severity": severity,
                "status": Status.OPEN.value,
                "summary": summary,
                "value": value,
                "opened_at": at,
                "updated_at": at,
            }
        )
        incident = self.get(int(table.last_pk))  # type: ignore[arg-type]
        assert incident is not None  # noqa: S101
        return incident, True

    def append(
        self,
        incident_id: int,
        kind: str,
        message: str,
        *,
        at: float,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        table = self.db.table("events")
        row = {
            "incident_id": incident_id,
            "at": at,
            "kind": kind,
            "message": message,
            "data": _json(dict(data or {})),
        }
        table.insert(row)
        self.db.table("incidents").update(incident_id, {"updated_at": at})
        return _event(row | {"id": table.last_pk})

    def record_llm_calls(self, incident_id: int, calls: Sequence[Any]) -> None:
        """Append model calls (LLMCall values) to the audit table."""
        self.db.table("llm_calls").insert_all(
            {
                "incident_id": incident_id,
                "at": c.at,
                "agent": c.agent,
                "provider": c.provider,
                "model": c.model,
                "input_tokens": c.input_tokens,
                "output_tokens": c.output_tokens,
                "cost_usd": c.cost_usd,
                "latency_s": c.latency_s,
                "prompt_digest": c.prompt_digest,
                "tools": _json(list(c.tools)),
                "decision": c.decision,
                "valid": int(c.valid),
                "error": c.error,
            }
            for c in calls
        )

    def set_status(
        self, incident_id: int, status: Status, *, at: float, resolution: Resolution | None = None
    ) -> Incident:
        changes: dict[str, Any] = {"status": status.value, "updated_at": at}
        if status is Status.RESOLVED:
            changes |= {"resolved_at": at, "resolution": resolution.value if resolution else None}
        if status is Status.ESCALATED:
            changes["escalated_at"] = at
        self.db.table("incidents").update(incident_id, changes)
        incident = self.get(incident_id)
        assert incident is not None  # noqa: S101
        return incident
