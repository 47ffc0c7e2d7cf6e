"""`freshness.sql` probe: the age of `max(<column>)` from a SQL query, judged like dbt's
source freshness (`warn_after` / `error_after`). NULL or no rows means infinitely stale.

`database` is a SQLite path (or `sqlite:///path`), or any SQLAlchemy URL when SQLAlchemy is
installed (`pip install 'opsmedic[sql]'` plus the driver). With `query`, the last column is
the timestamp and any columns before it become labels, one series per row.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from daemon.errors import PermanentError, TemporaryError
from probes.base import (
    PROBES,
    FreshnessLimits,
    ProbeConfig,
    ProbeContext,
    ProbeKind,
    Reading,
    freshness_reading,
)

_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"


class FreshnessSqlConfig(ProbeConfig, FreshnessLimits):
    kind: Literal["freshness.sql"] = "freshness.sql"
    database: str = Field(description="SQLite path, sqlite:///path, or a SQLAlchemy URL")
    query: str | None = Field(None, description="SQL whose last column is a timestamp")
    table: str | None = Field(None, pattern=_IDENT, description="Table (instead of `query`)")
    column: str | None = Field(None, pattern=_IDENT, description="Timestamp column of `table`")
    upstream: str | None = Field(
        None,
        description="SQL returning the upstream's newest timestamp (first column of the first "
        "row): evidence `upstream_loaded_at` / `upstream_age_seconds`; nothing newer upstream "
        "than what was loaded is the `upstream_stale` cause",
    )
    evidence: dict[str, str] = Field(
        default_factory=dict,
        description="Evidence for a diagnosis: name → SQL returning one value",
    )

    @model_validator(mode="after")
    def _query_or_table(self) -> FreshnessSqlConfig:
        if (self.query is None) == (self.table is None or self.column is None):
            raise ValueError("set either `query`, or both `table` and `column`")
        return self

    def sql(self) -> str:
        return self.query or f"SELECT max({self.column}) FROM {self.table}"  # noqa: S608 - idents validated


def to_epoch(value: Any) -> float | None:
    """A timestamp as epoch seconds; naive datetimes are UTC; numbers over 1e11 are millis."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        return float(value) / 1000 if value > 1e11 else float(value)
    if isinstance(value, str):
        if re.fullmatch(r"\d+(\.\d+)?", value.strip()):
            return to_epoch(float(value))
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    raise ValueError(f"not a timestamp: {value!r}")


class FreshnessSqlProbe:
    def __init__(self, config: FreshnessSqlConfig, context: ProbeContext) -> None:
        self.config = config
        self.clock = context.clock
        self._engine: Any = None

    def _sqlite_path(self) -> str | None:
        db = self.config.database
        if db.startswith("sqlite:///"):
            return db.removeprefix("sqlite:///")
        return None if "://" in db else db

    def _rows(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        path = self._sqlite_path()
        if path is not None:
            try:
                uri = Path(path).absolute().as_uri() + "?mode=ro"  # read-only, never creates
                conn = sqlite3.connect(uri, uri=True, timeout=self.config.timeout)
            except sqlite3.DatabaseError as exc:
                raise PermanentError(f"cannot open SQLite database {path}: {exc}") from exc
            try:
                cursor = conn.execute(sql)
                names = [d[0] for d in cursor.description or ()]
                return names, [tuple(r) for r in cursor.fetchall()]
            except sqlite3.DatabaseError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise TemporaryError(f"{path}: {exc}") from exc
                raise PermanentError(f"{path}: {exc}") from exc
            finally:
                conn.close()
        return self._sqlalchemy_rows(sql)

    def _sqlalchemy_rows(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            import sqlalchemy
        except ImportError:
            raise PermanentError(
                f"database {self.config.database.split('://')[0]}:// needs SQLAlchemy: "
                "pip install 'opsmedic[sql]' and the database driver"
            ) from None
        if self._engine is None:
            self._engine = sqlalchemy.create_engine(self.config.database, pool_pre_ping=True)
        try:
            with self._engine.connect() as conn:
                result = conn.execute(sqlalchemy.text(sql))
                return list(result.keys()), [tuple(r) for r in result]
        except sqlalchemy.exc.OperationalError as exc:
            raise TemporaryError(f"freshness query failed: {exc.orig}") from exc
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise PermanentError(f"freshness query failed: {exc}") from exc

    async def check(self) -> list[Reading]:
        cfg = self.config
        names, rows = await asyncio.to_thread(self._rows, cfg.sql())
        now = self.clock.now()
        if not rows:
            rows = [(None,)]
        base_labels = {"table": cfg.table} if cfg.table else {}
        readings = []
        for row in rows:
            *label_values, stamp = row
            labels = base_labels | {n: str(v) for n, v in zip(names, label_values, strict=False)}
            try:
                loaded_at = to_epoch(stamp)
            except ValueError as exc:
                raise PermanentError(f"freshness query returned {exc}") from None
            missing = "no rows: infinitely stale"
            readings.append(freshness_reading(cfg, labels, loaded_at, now, missing=missing))
        return readings

    async def evidence(self, labels: Mapping[str, str]) -> dict[str, Any]:
        """The upstream's freshness and the `evidence:` queries; failures are reported in
        `evidence_error`, never raised."""
        found: dict[str, Any] = {}
        errors = []
        queries = dict(self.config.evidence)
        if self.config.upstream is not None:
            queries[UPSTREAM] = self.config.upstream
        for name, sql in queries.items():
            try:
                _, rows = await asyncio.to_thread(self._rows, sql)
            except (TemporaryError, PermanentError) as exc:
                errors.append(f"{name}: {exc}")
                continue
            value = rows[0][0] if rows and rows[0] else None
            if name != UPSTREAM:
                found[name] = _plain(value)
                continue
            try:
                stamp = to_epoch(value)
            except ValueError as exc:
                errors.append(f"upstream: {exc}")
                continue
            found["upstream_loaded_at"] = stamp
            found["upstream_age_seconds"] = (
                None if stamp is None else max(0.0, self.clock.now() - stamp)
            )
        if errors:
            found["evidence_error"] = "; ".join(errors)
        return found


UPSTREAM = "\0upstream"  # not a valid evidence name, so it never clashes with one


def _plain(value: Any) -> Any:
    """A query's value as JSON: numbers and strings as they are, timestamps as ISO text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


PROBES.register("freshness.sql", ProbeKind(FreshnessSqlConfig, FreshnessSqlProbe))
