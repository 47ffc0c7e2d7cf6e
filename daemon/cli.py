"""Command-line entry points (argparse). Each command parses, calls into the package, and
maps the result to an exit code:

  0  success / everything healthy
  1  something is wrong with what was checked: invalid config or playbook, a probe breaching,
     the demo missing an expected outcome, an incident that does not exist
  2  usage error (bad flags)
  3  could not run: a probe failed, the incident log is unreadable
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon.errors import ConfigError, PermanentError

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3
CONFIG_HELP = (
    "daemon config (default: $OPSMEDIC_CONFIG, ./opsmedic.yaml, /etc/opsmedic/opsmedic.yaml)"
)


def _settings(args: argparse.Namespace) -> Any:
    from daemon.config import find_config, load_settings

    return load_settings(find_config(args.config))


def _playbooks(args: argparse.Namespace, settings: Any) -> Any:
    from daemon.playbook import load_playbooks

    paths = [Path(p) for p in getattr(args, "paths", None) or []] or settings.playbooks
    playbooks = load_playbooks(paths)
    problems = settings.source_problems(playbooks)
    if problems:
        raise ConfigError(problems)
    return playbooks


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.engine import serve

    settings = _settings(args)
    if args.dry_run:
        settings = settings.model_copy(update={"dry_run": True})
    logging.getLogger().setLevel(settings.log_level.upper())
    playbooks = _playbooks(args, settings)
    if not playbooks:
        print(f"no playbooks found in {', '.join(map(str, settings.playbooks))}", file=sys.stderr)
        return EXIT_PROBLEM
    asyncio.run(serve(settings, playbooks))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from daemon.sandbox.demo import run_demo

    return asyncio.run(run_demo(workdir=args.workdir, slack_channel=args.slack_channel))


def cmd_validate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    playbooks = _playbooks(args, settings)
    for lp in playbooks:
        print(
            f"ok  {lp.path}: {lp.playbook.name} ({lp.playbook.probe_config.kind}, "
            f"{len(lp.playbook.steps)} action(s))"
        )
    if not playbooks:
        print("no playbooks found", file=sys.stderr)
        return EXIT_PROBLEM
    print(f"{len(playbooks)} playbook(s) valid")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from daemon.clock import SystemClock
    from daemon.engine import check_now
    from daemon.report import reading_json, readings_table
    from probes.base import Outcome

    settings = _settings(args)
    results = asyncio.run(check_now(settings, _playbooks(args, settings), SystemClock()))
    if args.json:
        print(json.dumps({k: [reading_json(r) for r in v] for k, v in results.items()}, indent=2))
    else:
        print(readings_table(results))
    outcomes = {r.outcome for readings in results.values() for r in readings}
    if Outcome.ERROR in outcomes:
        return EXIT_ERROR
    return EXIT_PROBLEM if Outcome.BREACH in outcomes else EXIT_OK


def _store(args: argparse.Namespace) -> Any:
    from daemon.incidents import IncidentStore

    database = args.db if args.db else _settings(args).database
    return IncidentStore(database, readonly=True)


def cmd_incidents_list(args: argparse.Namespace) -> int:
    from daemon.incidents import Status
    from daemon.report import incident_json, incidents_table

    store = _store(args)
    status = Status(args.status) if args.status else None
    incidents = store.incidents(status=status, playbook=args.playbook, limit=args.limit)
    if args.json:
        print(json.dumps([incident_json(i) for i in incidents], indent=2, default=str))
    elif incidents:
        print(incidents_table(store, incidents))
    else:
        print("no incidents")
    return EXIT_OK


def cmd_incidents_show(args: argparse.Namespace) -> int:
    from daemon.report import incident_detail, incident_json

    store = _store(args)
    incident = store.get(args.id)
    if incident is None:
        print(f"no incident #{args.id} in {store.path}", file=sys.stderr)
        return EXIT_PROBLEM
    events = store.events(incident.id)
    calls = store.llm_calls(incident.id)
    if args.json:
        print(json.dumps(incident_json(incident, events, calls), indent=2, default=str))
    else:
        print(incident_detail(incident, events, calls))
    return EXIT_OK


def cmd_incidents_usage(args: argparse.Namespace) -> int:
    import time

    from daemon.report import usage_table

    store = _store(args)
    now = time.time()
    rows = store.llm_usage(since=now - now % 86400 - (args.days - 1) * 86400)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(usage_table(rows))
    else:
        print(f"no LLM calls in the last {args.days} day(s)")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from daemon.agents.chain import LLMDiagnosers
    from daemon.clock import SystemClock
    from daemon.evaluation import agent_names, evaluate, load_scenarios, summary
    from daemon.report import eval_comparison, eval_table

    settings = _settings(args)
    llm_agents = LLMDiagnosers(
        settings.agents, settings.llm, clock=SystemClock(), redactor=settings.redactor()
    )
    known = agent_names(llm_agents)
    agents = args.agent or ["rules"]
    unknown = [a for a in agents if a not in known]
    if unknown:
        print(
            f"opsmedic eval: unknown agent {unknown[0]!r}; known: {', '.join(known)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    scenarios = load_scenarios(args.scenarios)

    async def run_all() -> list[Any]:
        try:
            return [
                await evaluate(scenarios, agent, llm_agents, settings.diagnosis) for agent in agents
            ]
        finally:
            await llm_agents.aclose()

    results = [(os, summary(os, a)) for a, os in zip(agents, asyncio.run(run_all()), strict=True)]
    if args.json:
        report = [{**r, "outcomes": [asdict(o) for o in os]} for os, r in results]
        print(json.dumps({"agents": report}, indent=2))
    else:
        print("\n\n".join(eval_table(os, r) for os, r in results))
        if len(results) > 1:
            print("\n" + eval_comparison([r for _, r in results]))
    below = [r["agent"] for _, r in results if r["pass_rate"] < args.min_pass_rate]
    harmful = [
        r["agent"]
        for _, r in results
        if args.max_harmful is not None and r["harmful"] > args.max_harmful
    ]
    for agent in below:
        print(f"opsmedic eval: {agent}: pass rate below {args.min_pass_rate}", file=sys.stderr)
    for agent in harmful:
        print(
            f"opsmedic eval: {agent}: more than {args.max_harmful} harmful decisions",
            file=sys.stderr,
        )
    return EXIT_PROBLEM if below or harmful else EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from daemon.config import Settings
    from daemon.playbook import playbook_json_schema

    schema = playbook_json_schema() if args.what == "playbook" else Settings.model_json_schema()
    print(json.dumps(schema, indent=2))
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="opsmedic",
        description="Self-healing ops daemon: probes → incidents → playbook actions → verify "
        "→ resolve or escalate.",
        epilog="Exit codes: 0 ok, 1 problem found (invalid playbook, breach, failed demo), "
        "2 usage error, 3 could not run (probe or incident log failure).",
    )
    top.add_argument("--version", action="version", version=f"opsmedic {__version__}")
    top.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="stderr log level",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Any, help: str, config: bool = True) -> argparse.ArgumentParser:  # noqa: A002
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        if config:
            p.add_argument("-c", "--config", type=Path, help=CONFIG_HELP)
        return p

    run = command("run", cmd_run, "run the daemon until SIGTERM/SIGINT")
    run.add_argument("--dry-run", action="store_true", help="decide and log, never act")

    demo = command(
        "demo", cmd_demo, "run the daemon against a simulated world with 4 faults", config=False
    )
    demo.add_argument("--workdir", type=Path, help="keep the demo's files (incident log) here")
    demo.add_argument(
        "--slack-channel",
        help="also escalate to this Slack channel "
        "(needs $SLACK_BOT_TOKEN; default $OPSMEDIC_SLACK_CHANNEL)",
    )

    validate = command(
        "validate", cmd_validate, "check the config and playbooks; print file:line: field: message"
    )
    validate.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="playbook files or directories (default: the config's playbooks)",
    )

    check = command(
        "check",
        cmd_check,
        "run each playbook's probe once and print its readings (no incidents, "
        "no actions); exit 1 on a breach, 3 on a probe error",
    )
    check.add_argument(
        "paths",
        nargs="*",
        metavar="PLAYBOOK",
        help="playbook files or directories (default: the config's playbooks)",
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")

    incidents = sub.add_parser("incidents", help="read the incident log")
    isub = incidents.add_subparsers(dest="incidents_command", required=True, metavar="COMMAND")
    for name, func, help_text in (
        ("list", cmd_incidents_list, "list incidents, newest first"),
        ("show", cmd_incidents_show, "show one incident, its timeline, diagnoses and LLM cost"),
        ("usage", cmd_incidents_usage, "LLM calls, tokens and cost per UTC day, agent, model"),
    ):
        p = isub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        p.add_argument("-c", "--config", type=Path, help=CONFIG_HELP)
        p.add_argument("--db", type=Path, help="incident log (default: the config's database)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "list":
            p.add_argument("--status", choices=["open", "escalated", "resolved"])
            p.add_argument("--playbook", help="only this playbook's incidents")
            p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
        elif name == "show":
            p.add_argument("id", type=int, help="incident id")
        else:
            p.add_argument(
                "--days", type=int, default=7, help="today and the days before (default 7)"
            )

    evaluation = command(
        "eval",
        cmd_eval,
        "score diagnosing agents on recorded scenarios (no probe runs, no action is taken; "
        "LLM agents do call their provider); a decision is harmful when it acts where escalate "
        "is the only acceptable answer; exit 1 when an agent's pass rate is below "
        "--min-pass-rate or it made more than --max-harmful harmful decisions",
    )
    evaluation.add_argument("scenarios", type=Path, metavar="SCENARIO_DIR")
    evaluation.add_argument(
        "--agent",
        action="append",
        metavar="NAME",
        help="agent to evaluate: rules or one named in the config's agents: (repeat to "
        "compare several; default rules)",
    )
    evaluation.add_argument(
        "--min-pass-rate", type=float, default=0.0, help="exit 1 below this share (0 to 1)"
    )
    evaluation.add_argument(
        "--max-harmful",
        type=int,
        default=None,
        metavar="N",
        help="exit 1 with more than N harmful decisions (default: no limit)",
    )
    evaluation.add_argument("--json", action="store_true", help="machine-readable output")

    schema = command("schema", cmd_schema, "print a JSON Schema (for editors)", config=False)
    schema.add_argument("what", choices=["playbook", "config"])
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_PROBLEM
    except PermanentError as exc:
        print(f"opsmedic: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
