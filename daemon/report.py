"""Plain-text tables for the CLI and the demo, and JSON-ready views of incidents."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import yaml

from daemon.durations import format_duration
from daemon.incidents import ACTION_ENDS, Event, EventKind, Incident, IncidentStore
from daemon.notify.console import labels_text
from probes.base import Reading


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def stamp(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def actions_of(events: Sequence[Event]) -> list[str]:
    return [str(e.data.get("action")) for e in events if e.kind is EventKind.ACTION_STARTED]


def attempts_text(events: Sequence[Event], output_lines: int = 20) -> str:
    """Each attempt, whether its change landed and how it ended, then the output of those
    that printed any (command actions)."""
    started = {e.data.get("attempt"): e for e in events if e.kind is EventKind.ACTION_STARTED}
    if not started:
        return ""
    ended = {e.data.get("attempt"): e for e in events if e.kind in ACTION_ENDS}
    rows, outputs = [], []
    for number, start in started.items():
        end = ended.get(number)
        if end is None:
            result = "in flight (or cut short; reconciled on restart)"
        elif end.kind is EventKind.ACTION_RECONCILED and not end.data.get("landed"):
            result = "never landed: not counted"
        elif end.data.get("ok"):
            result = "landed" + (" (found after a restart)" if end.data.get("landed") else "")
        else:
            result = "failed"
        rows.append([number, start.data.get("action"), start.data.get("uses"), stamp(start.at),
                     result, end.message if end else ""])  # fmt: skip
        output = str((end.data if end else {}).get("output") or "").rstrip()
        if output:
            tail = "\n".join(output.splitlines()[-output_lines:])
            outputs.append(f"output of attempt {number} ({start.data.get('action')}):\n"
                           + textwrap.indent(tail, "  "))  # fmt: skip
    text = "attempts:\n" + table(["#", "action", "uses", "started", "result", "message"], rows)
    return "\n\n".join([text, *outputs])


def outcome_of(incident: Incident) -> str:
    return incident.resolution if incident.resolution else incident.status.value


def summary_table(
    store: IncidentStore, rows: Sequence[tuple[Incident | None, float, str, str]]
) -> str:
    """The demo's summary: one row per injected fault."""
    body = []
    for incident, injected_at, outcome, expected in rows:
        if incident is None:
            body.append(["-", "-", "-", "-", "-", outcome, "-", expected])
            continue
        acts = actions_of(store.events(incident.id))
        recovered = (
            format_duration(incident.resolved_at - injected_at) if incident.resolved_at else "-"
        )
        body.append(
            [
                f"#{incident.id}",
                incident.playbook,
                incident.labels.get("name") or "-",
                format_duration(max(0.0, incident.opened_at - injected_at)),
                ", ".join(acts) or "-",
                outcome,
                recovered,
                expected,
            ]
        )
    return table(
        [
            "incident",
            "playbook",
            "target",
            "detected after",
            "action(s)",
            "outcome",
            "time to recover",
            "expected",
        ],
        body,
    )


def incidents_table(store: IncidentStore, incidents: Sequence[Incident]) -> str:
    return table(
        ["id", "status", "playbook", "target", "opened", "actions", "outcome", "summary"],
        [
            [
                i.id,
                i.status.value,
                i.playbook,
                labels_text(i.labels) or "-",
                stamp(i.opened_at),
                ", ".join(actions_of(store.events(i.id))) or "-",
                outcome_of(i) if i.resolution else "-",
                i.summary[:60],
            ]
            for i in incidents
        ],
    )


def diagnoses_text(events: Sequence[Event], calls: Sequence[Mapping[str, Any]]) -> str:
    """Who decided what and why, and what the model calls cost."""
    parts = []
    for e in events:
        if e.kind is not EventKind.DIAGNOSED:
            continue
        d = e.data
        cost = (
            f", {d.get('tokens', 0)} tokens, ${d.get('cost_usd', 0.0):.4f}"
            if d.get("llm_calls")
            else ""
        )
        parts.append(
            f"  {stamp(e.at)}  {d.get('agent')} → {d.get('action')} "
            f"(confidence {float(d.get('confidence', 1.0)):.2f}{cost})\n"
            + textwrap.indent(textwrap.fill(str(d.get("reason", "")), 92), "    ")
        )
    text = "diagnoses:\n" + "\n".join(parts) if parts else ""
    if calls:
        rows = [
            [
                stamp(c["at"]),
                c["agent"],
                f"{c['provider']}/{c['model']}",
                f"{c['input_tokens']}/{c['output_tokens']}",
                f"${c['cost_usd']:.4f}",
                f"{c['latency_s']:.2f}s",
                ", ".join(c["tools"]) or "-",
                c["decision"] or "-",
                "ok" if c["valid"] else f"invalid: {c['error']}"[:60],
            ]
            for c in calls
        ]
        total = sum(c["cost_usd"] for c in calls)
        tokens = sum(c["input_tokens"] + c["output_tokens"] for c in calls)
        text += (
            f"\n\nLLM calls ({len(calls)}; {tokens} tokens; ${total:.4f}):\n"
            + table(
                [
                    "time",
                    "agent",
                    "model",
                    "tokens in/out",
                    "cost",
                    "latency",
                    "tools",
                    "decision",
                    "valid",
                ],
                rows,
            )  # fmt: skip
        )
    return text


def incident_detail(
    incident: Incident, events: Sequence[Event], calls: Sequence[Mapping[str, Any]] = ()
) -> str:
    head = [
        f"incident #{incident.id}  {incident.playbook}  ({incident.severity})",
        f"status:      {incident.status.value}"
        + (f" ({incident.resolution})" if incident.resolution else ""),
        f"target:      {labels_text(incident.labels) or '-'}",
        f"fingerprint: {incident.fingerprint}",
        f"opened:      {stamp(incident.opened_at)}",
        f"resolved:    {stamp(incident.resolved_at)}",
        f"summary:     {incident.summary}",
        "",
    ]
    timeline = table(
        ["time", "event", "message"], [[stamp(e.at), e.kind, e.message] for e in events]
    )
    diagnoses = diagnoses_text(events, calls)
    if diagnoses:
        timeline += "\n\n" + diagnoses
    attempts = attempts_text(events)
    if attempts:
        timeline += "\n\n" + attempts
    found = [e for e in events if e.kind is EventKind.CAUSES]
    if found:
        timeline += "\n\ncauses found (last diagnosis):\n" + table(
            ["cause", "source", "evidence"],
            [[c.get("cause"), c.get("source"), c.get("detail")] for c in found[-1].data["causes"]],
        )
    evidence = [e for e in events if e.kind is EventKind.EVIDENCE]
    if not evidence:
        return "\n".join(head) + timeline
    latest = yaml.safe_dump(dict(evidence[-1].data), sort_keys=False, width=100)
    return (
        "\n".join(head)
        + timeline
        + f"\n\nevidence of the last diagnosis ({stamp(evidence[-1].at)}; all with --json):\n"
        + textwrap.indent(latest.rstrip(), "  ")
    )


def incident_json(
    incident: Incident,
    events: Sequence[Event] | None = None,
    calls: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    data = asdict(incident)
    data["labels"] = dict(incident.labels)
    if events is not None:
        data["events"] = [asdict(e) | {"data": dict(e.data)} for e in events]
    if calls is not None:
        data["llm_calls"] = [dict(c) for c in calls]
        data["llm_cost_usd"] = sum(c["cost_usd"] for c in calls)
    return data


def readings_table(results: dict[str, list[Reading]]) -> str:
    rows = [
        [
            name,
            r.outcome.value,
            "-" if r.value is None else f"{r.value:.6g}",
            labels_text(r.labels) or "-",
            r.message,
        ]
        for name, readings in results.items()
        for r in (readings or [])
    ] + [[name, "(no series)", "-", "-", "empty result"] for name, rs in results.items() if not rs]
    return table(["playbook", "outcome", "value", "labels", "message"], rows)


def reading_json(reading: Reading) -> dict[str, Any]:
    value = reading.value
    return {
        "outcome": reading.outcome.value,
        "value": None if value is None or value != value else value,
        "labels": dict(reading.labels),
        "message": reading.message,
        "evidence": dict(reading.evidence),
    }


def eval_table(outcomes: Sequence[Any], result: Mapping[str, Any]) -> str:
    """`opsmedic eval`: one row per scenario, then the agent's score."""
    rows = [
        [
            o.scenario,
            o.category,
            "pass"
            if o.passed
            else "OUTSIDE PLAYBOOK"
            if o.outside_playbook
            else "HARMFUL"
            if o.harmful
            else "fail",
            o.decision,
            ", ".join(o.accept),
            o.decided_by,
            o.tokens,
            f"${o.cost_usd:.4f}",
            f"{o.latency_s * 1000:.1f}ms",
        ]
        for o in outcomes
    ]
    body = table(
        ["scenario", "category", "result", "decision", "acceptable", "decided by", "tokens",
         "cost", "latency"],
        rows,
    )  # fmt: skip
    categories = ", ".join(
        f"{c} {v['passed']}/{v['scenarios']} (harmful {v['harmful']})"
        for c, v in result["by_category"].items()
    )
    return (
        f"{body}\n\nagent {result['agent']}: {result['passed']}/{result['scenarios']} passed "
        f"({result['pass_rate']:.0%}; {categories}); harmful: {result['harmful']} of "
        f"{result['must_escalate']} must-escalate; outside the playbook: "
        f"{result['outside_playbook']}; fell back to rules: {result['fell_back_to_rules']}; "
        f"mean tokens {result['mean_tokens']:.0f}, cost "
        f"${result['total_cost_usd']:.4f}, latency mean {result['mean_latency_s'] * 1000:.1f}ms "
        f"p95 {result['p95_latency_s'] * 1000:.1f}ms"
    )


def eval_comparison(results: Sequence[Mapping[str, Any]]) -> str:
    """`opsmedic eval` with several agents: one row per agent."""
    return table(
        ["agent", "passed", "pass rate", "harmful", "outside playbook", "fell back", "mean tokens",
         "total cost", "mean latency", "p95 latency"],
        [
            [
                r["agent"],
                f"{r['passed']}/{r['scenarios']}",
                f"{r['pass_rate']:.0%}",
                r["harmful"],
                r["outside_playbook"],
                r["fell_back_to_rules"],
                f"{r['mean_tokens']:.0f}",
                f"${r['total_cost_usd']:.4f}",
                f"{r['mean_latency_s'] * 1000:.1f}ms",
                f"{r['p95_latency_s'] * 1000:.1f}ms",
            ]
            for r in results
        ],
    )  # fmt: skip


def usage_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """`opsmedic incidents usage`: LLM spend per day, agent and model, with a total."""
    body = table(
        ["day", "agent", "model", "incidents", "calls", "invalid", "tokens in/out", "cost"],
        [
            [
                r["day"],
                r["agent"],
                r["model"],
                r["incidents"],
                r["calls"],
                r["invalid"],
                f"{r['input_tokens']}/{r['output_tokens']}",
                f"${r['cost_usd']:.4f}",
            ]
            for r in rows
        ],
    )
    total = sum(r["cost_usd"] for r in rows)
    return f"{body}\n\ntotal: {sum(r['calls'] for r in rows)} calls, ${total:.4f}"
