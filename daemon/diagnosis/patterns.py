"""Causes found in text: log lines, event messages and error strings, by a table of
case-insensitive regular expressions (documented in README, "How opsmedic decides").

A line yields at most one cause: the first row of the table that matches it, user patterns
first. Lines logged at INFO, DEBUG or TRACE are not evidence of a failure and are skipped, and
so are the kubelet's own probe messages ("Readiness probe failed: ... connection refused" says
the container is not answering, not that a dependency is down)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.diagnosis.causes import Cause

# (cause, pattern) in order: the first match names a line's cause. Specific before generic:
# an expired certificate is not an auth failure, a temporary DNS failure is not an outage.
BUILTIN: tuple[tuple[str, str], ...] = (
    ("cert_expired", r"certificate (has )?expired|certificate is not yet valid"),
    ("cert_expired", r"CERT_HAS_EXPIRED|x509: certificate has expired"),
    ("disk_full", r"no space left on device|\bENOSPC\b|disk quota exceeded|\bEDQUOT\b"),
    ("disk_full", r"\bdisk (is )?full\b|out of disk space|could not extend file"),
    ("auth_failed", r"password authentication failed|authentication failed|login failed for"),
    ("auth_failed", r"access denied for user|invalid (username|user name) or password"),
    ("auth_failed", r"invalid_grant|invalid_client|ExpiredToken|TokenExpired|InvalidAccessKeyId"),
    ("auth_failed", r"SignatureDoesNotMatch|\bunauthenticated\b|bad credentials"),
    ("auth_failed", r"(token|credentials?|session|password|api[ _-]?key)( has| have| is)? expired"),
    ("auth_failed", r"\b401\b.{0,40}unauthori[sz]ed|unauthori[sz]ed.{0,40}\b401\b"),
    ("auth_failed", r"permission denied for (table|schema|relation|database|sequence)"),
    ("schema_change", r"column \"?[\w.]+\"? (of relation \"?[\w.]+\"? )?does not exist"),
    ("schema_change", r"relation \"?[\w.]+\"? does not exist|table '?[\w.]+'? doesn't exist"),
    ("schema_change", r"no such (column|table)|unknown column|invalid column name"),
    ("schema_change", r"unrecognized name: |UNRESOLVED_COLUMN|cannot resolve '?`?\w+"),
    ("schema_change", r"column \"?[\w.]+\"? is of type \w+ but expression is of type"),
    ("schema_change", r"schema mismatch|incompatible schema"),
    ("schema_change", r"schema does not match|does not match (the )?(target |table )?schema"),
    ("schema_change", r"(field|column) \"?[\w.]+\"? (has )?changed type|changed type from"),
    ("schema_change", r"schema (fingerprint |version )?(has )?changed"),
    ("schema_change", r"parquet column cannot be converted|column count mismatch"),
    ("schema_change", r"missing (required )?columns?\b|expected \d+ columns?,? (but )?(got|found)"),
    ("data_error", r"invalid input syntax for type|violates (unique|not-null|foreign key|check)"),
    ("data_error", r"duplicate key value|null value in column|value too long for type"),
    ("data_error", r"could not convert string to|invalid literal for int\(\)"),
    ("data_error", r"NumberFormatException|UnicodeDecodeError|JSONDecodeError"),
    ("data_error", r"malformed (csv|json|record|row|input)|numeric field overflow"),
    ("data_error", r"date/time field value out of range|division by zero|ZeroDivisionError"),
    ("data_error", r"data (validation|quality) (check )?failed|configured to fail if"),
    ("lock_held", r"could not (obtain|acquire) (an? )?(advisory )?lock|unable to acquire lock"),
    ("lock_held", r"lock (is )?(held|owned) by|lock wait timeout exceeded|database is locked"),
    ("lock_held", r"LockNotAvailable|canceling statement due to lock timeout"),
    ("lock_held", r"another (writer|process|instance|run|job) (holds|is holding|is running)"),
    ("rate_limited", r"too many requests|rate[ _-]?limit|rate exceeded|throttl(ed|ing)"),
    ("rate_limited", r"\bSlowDown\b|RequestLimitExceeded|REQUEST_LIMIT_EXCEEDED"),
    ("rate_limited", r"(status|code|http)[\s:=/]*429\b|\b429 too many|quota exceeded for quota"),
    ("rate_limited", r"ProvisionedThroughputExceeded"),
    ("transient", r"connection reset by peer|broken pipe|\bECONNRESET\b|socket hang up"),
    ("transient", r"temporary failure in name resolution|\bEAI_AGAIN\b|deadlock detected"),
    (
        "transient",
        r"server closed the connection unexpectedly|unexpected EOF|TLS handshake timeout",
    ),
    ("transient", r"\b(502 bad gateway|503 service unavailable|504 gateway time-?out)\b"),
    ("transient", r"\bbackendError\b|please try again|retryable error"),
    ("dependency_down", r"connection refused|\bECONNREFUSED\b|no route to host"),
    ("dependency_down", r"could not connect to (server|host|database)|failed to connect to"),
    ("dependency_down", r"name or service not known|could not translate host name"),
    ("dependency_down", r"host is unreachable|upstream connect error|circuit breaker (is )?open"),
    ("config_error", r"secret \"?[\w.-]+\"? not found|configmap \"?[\w.-]+\"? not found"),
    ("config_error", r"couldn't find key \S+ in (secret|configmap)|invalid duration"),
    ("config_error", r"(failed|unable) to (parse|load|read) (the )?(config|configuration|setting)"),
    (
        "config_error",
        r"yaml: (unmarshal errors|line \d+)|invalid configuration|ImproperlyConfigured",
    ),
    (
        "config_error",
        r"\bconfig(uration)? error\b",
    ),
    ("config_error", r"missing required (config|configuration|setting|environment variable|env)"),
    ("config_error", r"environment variable \S+ (is )?(not set|required|missing)"),
    ("config_error", r"flag provided but not defined|executable file not found"),
)

_QUIET = re.compile(
    r"^\W*(\S+\s+){0,3}\[?\b(INFO|DEBUG|TRACE)\b\]?|\"?(level|lvl|severity)\"?\s*[:=]\s*\"?(info|debug|trace)\b",
    re.IGNORECASE,
)
_LOUD = re.compile(r"\b(ERROR|FATAL|CRITICAL|PANIC|Exception|Traceback)\b")
KUBELET_PROBE_EVENTS = frozenset({"Unhealthy", "ProbeWarning"})


@dataclass(frozen=True)
class Patterns:
    """Compiled (cause, regex) rows, user rows first; case-insensitive."""

    rows: tuple[tuple[str, re.Pattern[str]], ...]

    @classmethod
    def build(cls, *user: Mapping[str, Sequence[str]]) -> Patterns:
        rows = [(c, p) for table in user for c, patterns in table.items() for p in patterns]
        return cls(tuple((c, re.compile(p, re.IGNORECASE)) for c, p in [*rows, *BUILTIN]))

    def match(self, text: str) -> str | None:
        return next((cause for cause, rx in self.rows if rx.search(text)), None)


DEFAULT = Patterns.build()


def quiet(line: str) -> bool:
    """An INFO/DEBUG/TRACE line that says nothing of a failure."""
    return bool(_QUIET.search(line)) and not _LOUD.search(line)


def texts(evidence: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(source, text) pairs worth reading: log lines, Warning event messages (not the kubelet's
    probe results), an unreachable target's error, and other string evidence."""
    for entry in evidence.get("logs") or []:
        if not isinstance(entry, Mapping):
            continue
        where = f"logs {entry.get('pod', '?')}/{entry.get('container', '?')}"
        for line in entry.get("lines") or []:
            if isinstance(line, str) and line.strip() and not quiet(line):
                yield where, line
    for event in evidence.get("warning_events") or []:
        if isinstance(event, Mapping) and event.get("reason") not in KUBELET_PROBE_EVENTS:
            yield f"event {event.get('reason')} {event.get('object')}", str(event.get("message"))
    unreachable = evidence.get("unreachable")
    if isinstance(unreachable, Mapping) and unreachable.get("detail"):
        yield "probe", str(unreachable["detail"])
    for key, value in evidence.items():
        if isinstance(value, str) and key not in _STRUCTURAL:
            yield f"evidence {key}", value


_STRUCTURAL = frozenset({"freshness", "verdict", "reason", "latest_job", "evidence_error"})


def causes(evidence: Mapping[str, Any], patterns: Patterns = DEFAULT) -> Iterable[Cause]:
    for source, text in texts(evidence):
        found = patterns.match(text)
        if found is not None:
            yield Cause.of(found, source, text)
