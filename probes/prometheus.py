"""`prometheus` probe: a PromQL instant query. A vector yields one reading per series (its
labels become `labels.*` for the playbook's templates); a scalar yields one reading."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator

from daemon.errors import PermanentError, TemporaryError
from daemon.templating import check_template, is_template, render
from probes.base import PROBES, ProbeConfig, ProbeContext, ProbeKind, Reading, Threshold
from probes.prometheus_source import Dependency, PrometheusClient

EVIDENCE_SERIES_CAP = 20
Loc = tuple[str | int, ...]


class FromPrometheus(BaseModel):
    """Settings of every probe kind that reads a Prometheus source."""

    source: str = Field("default", description="Prometheus source name from the daemon config")
    evidence: dict[str, str] = Field(
        default_factory=dict,
        description="Extra PromQL evaluated when an incident opens, by name; may use "
        "{{ labels.x }} templates",
    )

    @field_validator("evidence")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for query in value.values():
            if is_template(query):
                check_template(query)
        return value


class PrometheusProbeConfig(ProbeConfig, FromPrometheus, Threshold):
    kind: Literal["prometheus"] = "prometheus"
    query: str = Field(min_length=1, description="PromQL instant query")


async def evidence_queries(
    client: PrometheusClient, queries: Mapping[str, str], labels: Mapping[str, str], at: float
) -> dict[str, Any]:
    """Evaluate each named query for one series: a number, a list of series, or an error."""
    found: dict[str, Any] = {}
    for name, template in queries.items():
        query = render(template, {"labels": dict(labels)})
        try:
            samples = await client.instant(query, at)
        except (TemporaryError, PermanentError) as exc:
            found[name] = {"error": str(exc)}
            continue
        if len(samples) == 1 and not samples[0].labels:
            found[name] = samples[0].value
        else:
            found[name] = [
                {"labels": dict(s.labels), "value": s.value} for s in samples[:EVIDENCE_SERIES_CAP]
            ]
    return found


class PrometheusProbeBase:
    """Shared by the Prometheus probe kinds: the client, the dependency, evidence queries."""

    def __init__(self, config: Any, context: ProbeContext) -> None:
        self.clock = context.clock
        self.client: PrometheusClient = context.prometheus_client(config.source)
        self.evidence_queries: dict[str, str] = config.evidence

    @property
    def dependency(self) -> Dependency:
        return self.client.dependency

    async def evidence(self, labels: Mapping[str, str]) -> dict[str, Any]:
        return await evidence_queries(self.client, self.evidence_queries, labels, self.clock.now())


class PrometheusProbe(PrometheusProbeBase):
    def __init__(self, config: PrometheusProbeConfig, context: ProbeContext) -> None:
        super().__init__(config, context)
        self.config = config

    async def check(self) -> list[Reading]:
        cfg = self.config
        samples = await self.client.instant(cfg.query, self.clock.now())
        readings = []
        for sample in samples:
            value = sample.value
            outcome = cfg.judge(value)
            message = (
                "value is NaN (no data)"
                if math.isnan(value)
                else f"value {value:.4g} (breach when {cfg.describe()})"
            )
            readings.append(
                Reading(outcome=outcome, labels=sample.labels, value=value, message=message)
            )
        return readings  # empty: resolves, as in Prometheus (unless no_data: breach)


PROBES.register("prometheus", ProbeKind(PrometheusProbeConfig, PrometheusProbe))


# --- checking PromQL before it runs -------------------------------------------------------


def promql_fields(config: BaseModel, *, evidence: bool = True) -> list[tuple[Loc, str]]:
    """(field path, PromQL) of every query a probe config runs: each field whose description
    mentions PromQL (a string, or a mapping of strings such as `evidence`), in nested models
    and lists too. `evidence=False` leaves out the `evidence` queries (they run once, when an
    incident opens, and are not re-checked by verification)."""
    found: list[tuple[Loc, str]] = []

    def walk(model: BaseModel, loc: Loc) -> None:
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            key = info.alias or name
            if "PromQL" in (info.description or ""):
                if name == "evidence" and not evidence:
                    continue
                if isinstance(value, str):
                    found.append(((*loc, key), value))
                elif isinstance(value, Mapping):
                    strings = {k: v for k, v in value.items() if isinstance(v, str)}
                    found.extend(((*loc, key, k), v) for k, v in strings.items())
            elif isinstance(value, BaseModel):
                walk(value, (*loc, key))
            elif isinstance(value, list | tuple):
                for index, item in enumerate(value):
                    if isinstance(item, BaseModel):
                        walk(item, (*loc, key, index))

    walk(config, ())
    return found


_QUOTES = {'"', "'", "`"}
_CLOSING = {")": "(", "]": "[", "}": "{"}


def _strings_blanked(query: str) -> tuple[str, str | None]:
    """The query with the insides of its string literals blanked (so brackets in label values
    do not count), and a problem if a string or comment is never closed."""
    out: list[str] = []
    i = 0
    while i < len(query):
        char = query[i]
        if char == "#":  # a comment runs to the end of the line
            end = query.find("\n", i)
            end = len(query) if end < 0 else end
            out.append(" " * (end - i))
            i = end
            continue
        if char in _QUOTES:
            j = i + 1
            while j < len(query) and query[j] != char:
                j += 2 if query[j] == "\\" and char != "`" else 1
            if j >= len(query):
                return "".join(out), f"unterminated string starting at {_position(query, i)}"
            out.append(char + " " * (j - i - 1) + char)
            i = j + 1
            continue
        out.append(char)
        i += 1
    return "".join(out), None


def _position(query: str, index: int) -> str:
    line = query.count("\n", 0, index) + 1
    column = index - (query.rfind("\n", 0, index) + 1) + 1
    return _where(query, line, column)


def _where(query: str, line: int, column: int) -> str:
    """A place in the query, in words (the file:line in front is the field's line)."""
    if "\n" in query.strip():
        return f"line {line} column {column} of the query"
    return f"column {column} of the query"


_PROMTOOL_POSITION = re.compile(r"^(\d+):(\d+): (?:parse error: )?(.*)$", re.S)


def _promtool_message(query: str, message: str) -> str:
    """promtool's `3:1: parse error: unclosed left parenthesis` as `unclosed left
    parenthesis at line 3 column 1 of the query`."""
    match = _PROMTOOL_POSITION.match(message)
    if match is None:
        return message
    line, column, what = match.groups()
    return f"{what} at {_where(query, int(line), int(column))}"


def structural_problem(query: str) -> str | None:
    """A cheap check when promtool is absent: strings closed, brackets balanced and nested."""
    blanked, problem = _strings_blanked(query)
    if problem:
        return problem
    stack: list[tuple[str, int]] = []
    for index, char in enumerate(blanked):
        if char in "([{":
            stack.append((char, index))
        elif char in _CLOSING:
            if not stack or stack[-1][0] != _CLOSING[char]:
                return f"unexpected {char!r} at {_position(query, index)}"
            stack.pop()
    if stack:
        char, index = stack[-1]
        return f"unclosed {char!r} at {_position(query, index)}"
    if not blanked.strip():
        return "empty query"
    return None


_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_RANGE = re.compile(r"\[\s*((?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))+)\s*(?::[^\]]*)?\]")


def range_windows(query: str) -> Iterator[tuple[str, float]]:
    """The range windows of a query's range selectors and subqueries (`[5m]`, `[1h:1m]`), as
    written and in seconds; brackets inside string literals do not count."""
    blanked, _ = _strings_blanked(query)
    for match in _RANGE.finditer(blanked):
        text = match.group(1)
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
        yield text, seconds


@dataclass(frozen=True, kw_only=True)
class PromQLCheck:
    """What checking a batch of queries found: a problem per query index that has one."""

    problems: dict[int, str] = field(default_factory=dict)
    checker: Literal["promtool", "structure"] = "promtool"
    note: str | None = None
    """Said once, e.g. that promtool was not found and only the structure was checked."""


_PROMTOOL_LINE = re.compile(r'"opsmedic_q(\d+)": (?:could not parse expression: )?(.*)$')


def check_promql(
    queries: Sequence[str], *, promtool: str | None = None, timeout: float = 60.0
) -> PromQLCheck:
    """Check queries with `promtool check rules`, run once over a temporary rules file with
    one recording rule per query; without promtool on PATH (or `promtool` given), check
    only their structure. Templated queries (`{{ ... }}`) are skipped: they are complete only
    per series, at run time."""
    todo = {i: q for i, q in enumerate(queries) if not is_template(q)}
    tool = promtool or shutil.which("promtool")
    if not todo:
        return PromQLCheck(checker="promtool" if tool else "structure")
    note = None
    if tool is not None:
        try:
            return _promtool(tool, todo, timeout)
        except _PromtoolFailed as exc:
            note = f"promtool did not work ({exc}); PromQL was checked for balanced brackets "
            note += "and quotes only"
    else:
        note = "promtool not found on PATH; PromQL was checked for balanced brackets and "
        note += "quotes only"
    problems = {}
    for index, query in todo.items():
        problem = structural_problem(query)
        if problem is not None:
            problems[index] = f"invalid PromQL: {problem}"
    return PromQLCheck(problems=problems, checker="structure", note=note)


class _PromtoolFailed(Exception):
    pass


def _promtool(tool: str, queries: Mapping[int, str], timeout: float) -> PromQLCheck:
    rules = {
        "groups": [
            {
                "name": "opsmedic",
                "rules": [{"record": f"opsmedic_q{i}", "expr": q} for i, q in queries.items()],
            }
        ]
    }
    with tempfile.TemporaryDirectory(prefix="opsmedic-promql-") as tmp:
        path = Path(tmp) / "queries.rules.yaml"
        path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
        try:
            done = subprocess.run(  # noqa: S603 - a fixed argv, no shell
                [tool, "check", "rules", str(path)],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _PromtoolFailed(str(exc)) from None
    if done.returncode == 0:
        return PromQLCheck(checker="promtool")
    problems: dict[int, str] = {}
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        match = _PROMTOOL_LINE.search(line)
        index = int(match.group(1)) if match else -1
        if match and index in queries:
            message = _promtool_message(queries[index], match.group(2).strip())
            problems[index] = f"invalid PromQL (promtool): {message}"
    if not problems:
        output = " ".join((done.stderr or done.stdout).split())[:300]
        raise _PromtoolFailed(f"exit {done.returncode}: {output}")
    return PromQLCheck(problems=problems, checker="promtool")
