"""The incident log: SQLite via sqlite-utils (WAL). IncidentStore is its only writer."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlite_utils

from daemon.detector import Phase, SeriesState
from daemon.diagnosis.history import PastAction, PastIncident
from daemon.errors import PermanentError

SCHEMA_VERSION = 1


class Status(StrEnum):
    OPEN = "open"  # firing; the responder is (or will be) working on it
    ESCALATED = "escalated"  # handed to humans; still open until the target recovers
    RESOLVED = "resolved"


class Resolution(StrEnum):
    AUTO_REMEDIATED = "auto-remediated"  # an action landed and verification then passed
    RECOVERED = "recovered"  # healthy without an action that landed
    RECOVERED_AFTER_ESCALATION = "recovered-after-escalation"


class EventKind(StrEnum):
    """Every kind of timeline event (stored as its value)."""

    OPENED = "opened"
    RESUMED = "resumed"  # the daemon restarted while the incident was open
    INTERRUPTED = "interrupted"  # a stop cut the response short; it resumes on restart
    EVIDENCE = "evidence"
    CAUSES = "causes"
    DIAGNOSED = "diagnosed"
    DECISION_REJECTED = "decision_rejected"
    DECISION_CACHED = "decision_cached"
    BUDGET_EXCEEDED = "budget_exceeded"
    AGENT_FALLBACK = "agent_fallback"
    AGENT_SKIPPED = "agent_skipped"
    AGENT_FAILED = "agent_failed"
    HANDOFF = "handoff"
    GUARD_DENIED = "guard_denied"  # a guard rail refused the action (escalated)
    GUARD_WAITING = "guard_waiting"  # a silence or a limit holds the action back for now
    SHADOW = "shadow"  # shadow mode or a pause: what would have run (escalated)
    ACTION_STARTED = "action_started"
    ACTION_RECONCILED = "action_reconciled"  # what became of an attempt cut short
    ACTION_FINISHED = "action_finished"
    ACTION_FAILED = "action_failed"
    VERIFYING = "verifying"
    VERIFY_FAILED = "verify_failed"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    NOTIFIED = "notified"
    NOTIFY_FAILED = "notify_failed"

    @property
    def bookkeeping(self) -> bool:
        """The notifiers' own receipts and failures: no notifier reports them."""
        return self in (EventKind.NOTIFIED, EventKind.NOTIFY_FAILED)


ACTION_ENDS = (EventKind.ACTION_FINISHED, EventKind.ACTION_FAILED, EventKind.ACTION_RECONCILED)


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
    kind: EventKind
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", EventKind(self.kind))  # a known kind, or ValueError


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


@dataclass(frozen=True, kw_only=True)
class Control:
    """A pause (`kind` pause; one playbook or all) or a silence (`kind` silence; label
    matchers) in force from `starts` until `ends` (None: until lifted)."""

    kind: str
    starts: float
    created_at: float
    ends: float | None = None
    playbook: str | None = None
    matchers: tuple[str, ...] = ()  # label matchers such as `namespace=shop` (see inhibit.py)
    comment: str = ""
    created_by: str = ""
    id: int = 0


def _control(row: Mapping[str, Any]) -> Control:
    return Control(
        id=row["id"],
        kind=row["kind"],
        playbook=row["playbook"],
        matchers=tuple(json.loads(row["matchers"] or "[]")),
        starts=row["starts"],
        ends=row["ends"],
        comment=row["comment"] or "",
        created_by=row["created_by"] or "",
        created_at=row["created_at"],
    )


def _event(row: Mapping[str, Any]) -> Event:
    return Event(
        id=row["id"],
        incident_id=row["incident_id"],
        at=row["at"],
        kind=EventKind(row["kind"]),
        message=row["message"],
        data=json.loads(row["data"]),
    )


# SQL names the kinds it matches through these (the enum's values), never by hand
_STARTED, _DENIED = EventKind.ACTION_STARTED.value, EventKind.GUARD_DENIED.value
_ACTIONS = ", ".join(f"'{k.value}'" for k in (EventKind.ACTION_STARTED, *ACTION_ENDS))

# an action_started event whose attempt was not found never to have landed
_COUNTED = (
    "NOT EXISTS (SELECT 1 FROM events r WHERE r.incident_id = e.incident_id "  # noqa: S608 - the enum's values
    f"AND r.kind = '{EventKind.ACTION_RECONCILED.value}' "
    "AND json_extract(r.data, '$.attempt') = json_extract(e.data, '$.attempt') "
    "AND json_extract(r.data, '$.landed') = 0)"
)


def _take_lock(path: Path) -> int:
    """An exclusive flock on `<log>.lock`, which holds the owner's pid."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise PermanentError(
            f"{path} is in use by another opsmedic daemon (pid {holder}, lock {lock_path}); "
            "one daemon per incident log: stop it first"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


class IncidentStore:
    def __init__(self, path: Path | str, *, readonly: bool = False, lock: bool = False) -> None:
        """Open (and migrate) the log; `lock` takes it for this process alone, as a daemon
        must: a second daemon on the same log is refused, naming the holder's pid."""
        self.path = Path(path)
        self._lock: int | None = None
        if lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _take_lock(self.path)
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
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

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

        if "controls" not in self.db.table_names():  # pauses and silences (guard rails)
            self.db.table("controls").create(
                {
                    "id": int,
                    "kind": str,
                    "playbook": str,
                    "matchers": str,
                    "starts": float,
                    "ends": float,
                    "comment": str,
                    "created_by": str,
                    "created_at": float,
                    "expired_at": float,
                },
                pk="id",
                not_null={"kind", "starts", "created_at"},
            )
        if "alert_state" not in self.db.table_names():  # detector state across restarts
            self.db.table("alert_state").create(
                {
                    "playbook": str,
                    "fingerprint": str,
                    "labels": str,
                    "phase": str,
                    "active_since": float,
                    "keep_firing_since": float,
                    "absent": int,
                    "evaluated_at": float,
                    "saved_at": float,
                },
                pk=("playbook", "fingerprint"),
                not_null={"playbook", "fingerprint", "labels", "phase", "active_since"},
            )

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

    def events(self, incident_id: int, *, kind: EventKind | None = None) -> list[Event]:
        args: list[Any]
        where, args = "incident_id = ?", [incident_id]
        if kind is not None:
            where, args = where + " AND kind = ?", [*args, kind]
        rows = self.db.table("events").rows_where(where, args, order_by="id")
        return [_event(r) for r in rows]

    def action_attempts(self, incident_id: int) -> Counter[str]:
        """How many times each action id was started for this incident, crashes included,
        except attempts found never to have landed (they are not counted anywhere)."""
        rows = self.db.execute(
            "SELECT json_extract(e.data, '$.action') FROM events e "  # noqa: S608 - fixed clauses
            f"WHERE e.incident_id = ? AND e.kind = ? AND {_COUNTED}",
            [incident_id, _STARTED],
        ).fetchall()
        return Counter(r[0] for r in rows)

    def attempts_started(self, incident_id: int) -> int:
        """Every attempt started for this incident, counted or not (it numbers the next)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM events WHERE incident_id = ? AND kind = ?",
            [incident_id, _STARTED],
        ).fetchone()
        return int(row[0])

    def unfinished_action(self, incident_id: int) -> Event | None:
        """The `action_started` event of an attempt whose result was never recorded (the
        daemon stopped or crashed while it ran), if the incident's last attempt is one."""
        last = None
        for event in self.events(incident_id):
            if event.kind is EventKind.ACTION_STARTED:
                last = event
            elif event.kind in ACTION_ENDS:
                last = None
        return last

    def last_action_event(self, incident_id: int) -> Event | None:
        """The incident's latest event about an action (started, ended, reconciled, being
        verified or failing verification): where its response stood when the daemon stopped."""
        kinds = (
            EventKind.ACTION_STARTED,
            EventKind.VERIFYING,
            EventKind.VERIFY_FAILED,
            *ACTION_ENDS,
        )
        marks = ", ".join("?" for _ in kinds)
        rows = list(
            self.db.table("events").rows_where(
                f"incident_id = ? AND kind IN ({marks})",
                [incident_id, *kinds],
                order_by="id DESC",
                limit=1,
            )
        )
        return _event(rows[0]) if rows else None

    def last_action(self, fingerprint: str, *, other_than: int) -> Event | None:
        """The latest counted action started on this target in another incident (cooldowns)."""
        rows = self.db.execute(
            "SELECT e.* FROM events e JOIN incidents i ON i.id = e.incident_id "  # noqa: S608
            "WHERE i.fingerprint = ? AND e.incident_id != ? AND e.kind = ? "
            f"AND {_COUNTED} ORDER BY e.at DESC LIMIT 1",
            [fingerprint, other_than, _STARTED],
        )
        columns = [d[0] for d in rows.description]
        row = rows.fetchone()
        return _event(dict(zip(columns, row, strict=True))) if row else None

    def action_starts(
        self, *, since: float, fingerprint: str | None = None, action: str | None = None
    ) -> list[float]:
        """When counted actions started after a time, oldest first: over every target, or one
        target, or one action id on one target (rate limit and flap guard)."""
        where = [f"e.kind = ? AND e.at > ? AND {_COUNTED}"]
        args: list[Any] = [_STARTED, since]
        if fingerprint is not None:
            where.append("i.fingerprint = ?")
            args.append(fingerprint)
        if action is not None:
            where.append("json_extract(e.data, '$.action') = ?")
            args.append(action)
        rows = self.db.execute(
            "SELECT e.at FROM events e JOIN incidents i ON i.id = e.incident_id "  # noqa: S608 - fixed clauses
            f"WHERE {' AND '.join(where)} ORDER BY e.at",
            args,
        ).fetchall()
        return [float(r[0]) for r in rows]

    def unhealthy_since(self, fingerprint: str, *, healthy_for: float, now: float) -> float:
        """When the target's current unhealthy streak began: the end of its last healthy stretch
        of at least `healthy_for` between incidents (the flap guard counts from there)."""
        rows = self.db.execute(
            "SELECT opened_at, resolved_at FROM incidents WHERE fingerprint = ? "
            "ORDER BY opened_at DESC",
            [fingerprint],
        ).fetchall()
        start = now
        for opened_at, resolved_at in rows:
            if resolved_at is not None and start - resolved_at >= healthy_for:
                break
            start = min(start, opened_at)
        return start

    def guard_denials(self, fingerprint: str, *, rule: str, action: str, since: float) -> int:
        """How often a guard rail refused this action on this target since a time."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM events e JOIN incidents i ON i.id = e.incident_id "
            "WHERE i.fingerprint = ? AND e.kind = ? AND e.at >= ? "
            "AND json_extract(e.data, '$.rule') = ? AND json_extract(e.data, '$.action') = ?",
            [fingerprint, _DENIED, since, rule, action],
        ).fetchone()
        return int(row[0])

    def history(self, fingerprint: str, *, since: float, other_than: int) -> list[PastIncident]:
        """Earlier incidents of this target opened since `since`, newest first, with the
        actions that ran in them (for the history causes)."""
        rows = self.db.execute(
            "SELECT i.id, i.opened_at, i.resolution, e.at, e.kind, e.data FROM incidents i "  # noqa: S608 - the enum's values
            f"LEFT JOIN events e ON e.incident_id = i.id AND e.kind IN ({_ACTIONS}) "
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
            if kind == _STARTED:
                kinds[key] = event.get("uses", "")
            elif event.get("landed", True):  # an attempt that never landed is no action
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
        kind: EventKind,
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

    def add_control(self, control: Control) -> Control:
        """Record a pause or a silence (from the CLI or the config); returns it with its id."""
        table = self.db.table("controls")
        table.insert(
            {
                "kind": control.kind,
                "playbook": control.playbook,
                "matchers": _json(list(control.matchers)),
                "starts": control.starts,
                "ends": control.ends,
                "comment": control.comment,
                "created_by": control.created_by,
                "created_at": control.created_at,
            }
        )
        return replace(control, id=int(table.last_pk))  # type: ignore[arg-type]

    def controls(self, kind: str, *, at: float | None = None) -> list[Control]:
        """Pauses or silences not expired, oldest first; with `at`, only those in force then."""
        if "controls" not in self.db.table_names():  # a read-only log from before guard rails
            return []
        where, args = "kind = ? AND expired_at IS NULL", list[Any]([kind])
        if at is not None:
            where += " AND starts <= ? AND (ends IS NULL OR ends > ?)"
            args += [at, at]
        rows = self.db.table("controls").rows_where(where, args, order_by="id")
        return [_control(r) for r in rows]

    def expire_controls(
        self, kind: str, *, at: float, ids: Sequence[int] = (), playbook: str | None = None
    ) -> list[Control]:
        """End pauses or silences now: the given ids, or those of one playbook, or all."""
        expired = []
        for control in self.controls(kind):
            if (ids and control.id not in ids) or (playbook and control.playbook != playbook):
                continue
            self.db.table("controls").update(control.id, {"expired_at": at})
            expired.append(control)
        return expired

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

    def save_alert_state(self, playbook: str, states: Sequence[SeriesState], at: float) -> None:
        """Replace a playbook's saved detector state (its pending and firing series) with
        `states`, in one transaction; `at` is when it was saved."""
        rows = [
            (
                playbook,
                s.fingerprint,
                _json(dict(s.labels)),
                s.phase.value,
                s.active_since,
                s.keep_firing_since,
                int(s.absent),
                s.evaluated_at,
                at,
            )
            for s in states
        ]
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM alert_state WHERE playbook = ?", [playbook])
            conn.executemany(
                "INSERT INTO alert_state (playbook, fingerprint, labels, phase, active_since, "
                "keep_firing_since, absent, evaluated_at, saved_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def alert_state(self, playbook: str) -> list[SeriesState]:
        """The detector state last saved for a playbook (empty if none), for `Detector.restore`."""
        if "alert_state" not in self.db.table_names():  # a read-only log from before restores
            return []
        rows = self.db.table("alert_state").rows_where("playbook = ?", [playbook], order_by="rowid")
        return [
            SeriesState(
                fingerprint=r["fingerprint"],
                labels=json.loads(r["labels"]),
                phase=Phase(r["phase"]),
                active_since=r["active_since"],
                evaluated_at=r["evaluated_at"],
                keep_firing_since=r["keep_firing_since"],
                absent=bool(r["absent"]),
            )
            for r in rows
        ]
