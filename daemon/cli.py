"""Command-line entry points (argparse). Each command parses, calls into the package, and
maps the result to an exit code:

  0    success / everything healthy
  1    something is wrong with what was checked: invalid config or playbook (or one `run`
       could not start with: a missing token file, an unset token variable, an incident log
       it cannot create), a probe breaching, the demo missing an expected outcome, an
       incident that does not exist
  2    usage error: bad flags, an unknown playbook or agent name
  3    could not run: a probe failed, the incident log or another file is unreadable
  70   internal error (EX_SOFTWARE): a bug in opsmedic; one line names it, `--debug` shows
       the traceback
  130  interrupted (Ctrl-C); 141 when stdout closes early (`opsmedic incidents list | head -1`)

No user error shows a Python traceback. The global options `--log-level` and `--debug` go
before or after the command (`opsmedic --debug validate` = `opsmedic validate --debug`).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import sqlite3
import sys
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from daemon import __version__
from daemon.errors import ConfigError, PermanentError

T = TypeVar("T")
EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3
EXIT_INTERNAL = 70  # EX_SOFTWARE
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141  # 128 + SIGINT, 128 + SIGPIPE
LOG_LEVELS = ("debug", "info", "warning", "error")
CONFIG_HELP = (
    "daemon config (default: $OPSMEDIC_CONFIG, ./opsmedic.yaml, /etc/opsmedic/opsmedic.yaml)"
)
EPILOG = (
    "Exit codes: 0 ok; 1 problem found (invalid config or playbook, breach, failed demo); "
    "2 usage error; 3 could not run (probe, incident log or file failure); 70 internal error "
    "(a bug: --debug shows the traceback); 130 interrupted; 141 output pipe closed early. "
    "--log-level and --debug may come before or after the command."
)


class UsageError(Exception):
    """A command line that names something that does not exist (exit 2)."""


class _NoWaitExecutor(concurrent.futures.ThreadPoolExecutor):
    """The event loop's thread pool; closing it does not wait for calls still blocked in
    their threads (a request with a 30 s timeout), so Ctrl-C ends a command at once."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=True)


def _run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run for the short commands, with the executor above."""
    loop = asyncio.new_event_loop()
    loop.set_default_executor(_NoWaitExecutor())
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        return runner.run(main)


def _config(args: argparse.Namespace) -> tuple[Any, Any]:
    """The settings and the parsed config file (None without one) for file:line problems."""
    from daemon.config import find_config, load_config

    return load_config(find_config(args.config))


def _settings(args: argparse.Namespace) -> Any:
    return _config(args)[0]


def _playbooks(args: argparse.Namespace, settings: Any) -> Any:
    from daemon.playbook import load_playbooks

    paths = [Path(p) for p in getattr(args, "paths", None) or []] or settings.playbooks
    playbooks = load_playbooks(paths)
    problems = settings.source_problems(playbooks)
    if problems:
        raise ConfigError(problems)
    return playbooks


def _startable(args: argparse.Namespace, *, store: bool = True) -> tuple[Any, Any]:
    """Settings and playbooks with nothing that would stop `run` at start-up; otherwise one
    ConfigError listing the config's start-up problems and every playbook problem."""
    settings, source = _config(args)
    problems = settings.startup_problems(source, store=store)
    try:
        playbooks = _playbooks(args, settings)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return settings, playbooks


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.config import find_config, playbook_query_report
    from daemon.engine import serve

    def load() -> tuple[Any, Any]:
        """The config and playbooks as `run` starts with them, checked as `validate` checks
        them (PromQL included); also each reload (SIGHUP)."""
        settings, playbooks = _startable(args)
        report = playbook_query_report(playbooks)
        if report.problems:
            raise ConfigError(report.problems)
        if args.shadow:
            settings = settings.model_copy(update={"dry_run": True})
        return settings, playbooks

    settings, playbooks = load()
    if getattr(args, "log_level", None) is None:  # an explicit --log-level wins
        logging.getLogger().setLevel(settings.log_level.upper())
    if not playbooks:
        print(f"no playbooks found in {', '.join(map(str, settings.playbooks))}", file=sys.stderr)
        return EXIT_PROBLEM
    config = find_config(args.config)
    paths = [Path(p) for p in getattr(args, "paths", None) or []] or settings.playbooks
    watch = [*([config] if config else []), *paths]
    asyncio.run(serve(settings, playbooks, reload=load, watch=watch))
    return EXIT_OK


def _writable_store(args: argparse.Namespace) -> Any:
    """The incident log, for the operator's pauses and silences (a running daemon reads them
    at its next decision)."""
    from daemon.incidents import IncidentStore

    database = args.db if args.db else _settings(args).database
    try:
        return IncidentStore(database)
    except (sqlite3.Error, OSError) as exc:
        raise PermanentError(f"cannot open the incident log {database}: {exc}") from None


def _seconds(text: str | None, flag: str) -> float | None:
    from daemon.durations import parse_duration

    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ConfigError([f"{flag}: {exc}"]) from None
    if seconds <= 0:
        raise ConfigError([f"{flag}: must be longer than 0s"])
    return seconds


def cmd_pause(args: argparse.Namespace) -> int:
    import time

    from daemon.controls import pause

    store = _writable_store(args)
    seconds = _seconds(args.for_, "--for")
    control = pause(
        store, time.time(), seconds=seconds, playbook=args.playbook, comment=args.comment or ""
    )
    what = f"playbook {args.playbook}" if args.playbook else "every playbook"
    until = f" for {args.for_}" if seconds else " until `opsmedic resume`"
    print(f"paused {what}{until} (pause #{control.id}): decisions are recorded and escalated")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    import time

    from daemon.controls import resume

    lifted = resume(_writable_store(args), time.time(), playbook=args.playbook)
    if not lifted:
        print("nothing was paused" + (f" for {args.playbook}" if args.playbook else ""))
        return EXIT_OK
    print(f"resumed: lifted {', '.join(f'#{c.id}' for c in lifted)}")
    return EXIT_OK


def cmd_silence_add(args: argparse.Namespace) -> int:
    import time

    from daemon.controls import add_silence

    seconds = _seconds(args.for_, "--for")
    assert seconds is not None  # noqa: S101 - required flag
    control = add_silence(
        _writable_store(args),
        time.time(),
        matchers=args.match,
        seconds=seconds,
        starts_in=_seconds(args.starts_in, "--starts-in") or 0.0,
        comment=args.comment or "",
    )
    print(
        f"silence #{control.id} added: no action on {', '.join(control.matchers)} for {args.for_}"
    )
    return EXIT_OK


def cmd_silence_list(args: argparse.Namespace) -> int:
    import time

    from daemon.controls import describe
    from daemon.report import table

    store = _store(args)
    now = time.time()
    rows = [
        describe(c, now)
        for kind in ("pause", "silence")
        for c in store.controls(kind)
        if c.ends is None or c.ends > now
    ]
    if args.json:
        print(
            json.dumps(
                [dict(zip(("id", "what", "left", "by", "comment"), r, strict=True)) for r in rows],
                indent=2,
            )
        )
    elif rows:
        print(table(["id", "pause / silence", "left", "by", "comment"], rows))
    else:
        print("no pauses or silences in force")
    return EXIT_OK


def cmd_silence_expire(args: argparse.Namespace) -> int:
    import time

    from daemon.controls import expire_silences

    expired = expire_silences(_writable_store(args), time.time(), ids=args.ids)
    missing = sorted(set(args.ids) - {c.id for c in expired})
    if expired:
        print(f"expired {', '.join(f'#{c.id}' for c in expired)}")
    if missing:
        print(f"no silence in force with id {', '.join(map(str, missing))}", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from daemon.sandbox.demo import run_demo

    return _run(run_demo(workdir=args.workdir, slack_channel=args.slack_channel))


def cmd_validate(args: argparse.Namespace) -> int:
    """What `run` checks at start-up, plus PromQL syntax and verify windows."""
    from daemon.config import playbook_query_report

    _, playbooks = _startable(args)
    report = playbook_query_report(playbooks)
    for warning in report.warnings:
        print(warning, file=sys.stderr)
    if report.note:
        print(f"opsmedic validate: note: {report.note}", file=sys.stderr)
    if report.problems:
        raise ConfigError(report.problems)
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

    settings, source = _config(args)
    playbooks = _check_targets(args, settings)
    problems = settings.startup_problems(source, store=False)  # check opens no incident log
    if problems:
        raise ConfigError(problems)
    results = _run(check_now(settings, playbooks, SystemClock()))
    if args.json:
        print(json.dumps({k: [reading_json(r) for r in v] for k, v in results.items()}, indent=2))
    else:
        print(readings_table(results))
    outcomes = {r.outcome for readings in results.values() for r in readings}
    if Outcome.ERROR in outcomes:
        return EXIT_ERROR
    return EXIT_PROBLEM if Outcome.BREACH in outcomes else EXIT_OK


def _check_targets(args: argparse.Namespace, settings: Any) -> Any:
    """`check` takes playbook files and directories, or names of the config's playbooks."""
    from daemon.playbook import load_playbooks
    from daemon.registry import did_you_mean

    paths, names = [], []
    for arg in args.paths or []:
        path = Path(arg)
        if path.exists() or os.sep in arg or path.suffix in (".yaml", ".yml"):
            paths.append(path)
        else:
            names.append(arg)
    if not names:
        return _playbooks(args, settings)
    configured = {lp.playbook.name: lp for lp in load_playbooks(settings.playbooks)}
    unknown = [n for n in names if n not in configured]
    if unknown:
        known = sorted(configured)
        where = ", ".join(map(str, settings.playbooks))
        raise UsageError(
            f"no playbook file or name {unknown[0]!r}{did_you_mean(unknown[0], known)}; "
            f"the config's playbooks ({where}): {', '.join(known) or 'none'}"
        )
    chosen = [configured[n] for n in dict.fromkeys(names)]
    playbooks = [*load_playbooks(paths), *chosen] if paths else chosen
    problems = settings.source_problems(playbooks)
    if problems:
        raise ConfigError(problems)
    return playbooks


def _store(args: argparse.Namespace) -> Any:
    from daemon.incidents import IncidentStore

    database = args.db if args.db else _settings(args).database
    if Path(database).is_dir():
        raise PermanentError(f"{database} is a directory, not an incident log")
    try:
        return IncidentStore(database, readonly=True)
    except sqlite3.Error as exc:
        raise PermanentError(f"cannot read the incident log {database}: {exc}") from None


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

    outcomes = _run(run_all())
    results = [(o, summary(o, a)) for a, o in zip(agents, outcomes, strict=True)]
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


def _global_options(*, top: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the command. Below the top, their defaults are
    SUPPRESS: an option not given there leaves the top's value, one given there wins."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=None if top else argparse.SUPPRESS,
        help="stderr log level (default: warning; `run`: the config's log_level)",
    )
    options.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show the Python traceback of an error",
    )
    return options


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="opsmedic",
        description="Self-healing ops daemon: probes → incidents → playbook actions → verify "
        "→ resolve or escalate.",
        epilog=EPILOG,
        parents=[_global_options(top=True)],
    )
    top.add_argument("--version", action="version", version=f"opsmedic {__version__}")
    below = [_global_options(top=False)]
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Any, help: str, config: bool = True) -> argparse.ArgumentParser:  # noqa: A002
        p = sub.add_parser(name, help=help, description=help, parents=below, epilog=EPILOG)
        p.set_defaults(func=func)
        if config:
            p.add_argument("-c", "--config", type=Path, help=CONFIG_HELP)
        return p

    run = command(
        "run",
        cmd_run,
        "run the daemon until SIGTERM/SIGINT; SIGHUP or a changed config or playbook file "
        "reloads (an invalid new config is refused and the running one goes on)",
    )
    run.add_argument(
        "--shadow",
        "--dry-run",
        dest="shadow",
        action="store_true",
        help="shadow mode: detect, diagnose and guard, record what would have been done, never act",
    )

    def log_command(name: str, func: Any, help: str) -> argparse.ArgumentParser:  # noqa: A002
        p = command(name, func, help)
        p.add_argument("--db", type=Path, help="incident log (default: the config's database)")
        return p

    pause = log_command(
        "pause",
        cmd_pause,
        "kill switch: from the daemon's next decision on, run no action (decisions are "
        "recorded as 'would run' and escalated) until `opsmedic resume` or --for runs out",
    )
    pause.add_argument(
        "--for", dest="for_", metavar="DURATION", help="e.g. 1h (default: until resumed)"
    )
    pause.add_argument("--playbook", help="pause only this playbook")
    pause.add_argument("--comment", help="why (shown on every held decision)")
    resume = log_command("resume", cmd_resume, "lift the pauses in force (all, or --playbook's)")
    resume.add_argument("--playbook", help="lift only this playbook's pauses")

    silence = sub.add_parser(
        "silence", help="maintenance windows: hold actions on matching incidents"
    )
    ssub = silence.add_subparsers(dest="silence_command", required=True, metavar="COMMAND")

    def silence_command(name: str, func: Any, help: str) -> argparse.ArgumentParser:  # noqa: A002
        p = ssub.add_parser(name, help=help, description=help, parents=below, epilog=EPILOG)
        p.set_defaults(func=func)
        p.add_argument("-c", "--config", type=Path, help=CONFIG_HELP)
        p.add_argument("--db", type=Path, help="incident log (default: the config's database)")
        return p

    add = silence_command(
        "add",
        cmd_silence_add,
        "no action on incidents whose labels match every --match while the silence lasts; "
        "they wait and go on when it ends",
    )
    add.add_argument(
        "--match",
        action="append",
        required=True,
        metavar="MATCHER",
        help="label=value, label!=value, label=~regex or label!~regex; `playbook` matches the "
        "playbook name (repeat: all must match)",
    )
    add.add_argument("--for", dest="for_", required=True, metavar="DURATION", help="e.g. 2h")
    add.add_argument("--starts-in", metavar="DURATION", help="start later (default: now)")
    add.add_argument("--comment", help="why (shown on the held incidents)")
    listing = silence_command("list", cmd_silence_list, "pauses and silences in force or to come")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    expire = silence_command("expire", cmd_silence_expire, "end silences now")
    expire.add_argument("ids", type=int, nargs="+", metavar="ID", help="silence ids (see list)")

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
        "validate",
        cmd_validate,
        "check the config and playbooks as `run` would at start-up (files readable, token "
        "variables set, incident log writable), and PromQL (with promtool when on PATH); "
        "print file:line: field: message",
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
        help="names of the config's playbooks, or playbook files or directories "
        "(default: all the config's playbooks)",
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")

    incidents = sub.add_parser(
        "incidents", help="read the incident log", parents=below, epilog=EPILOG
    )
    isub = incidents.add_subparsers(dest="incidents_command", required=True, metavar="COMMAND")
    for name, func, help_text in (
        ("list", cmd_incidents_list, "list incidents, newest first"),
        ("show", cmd_incidents_show, "show one incident, its timeline, diagnoses and LLM cost"),
        ("usage", cmd_incidents_usage, "LLM calls, tokens and cost per UTC day, agent, model"),
    ):
        p = isub.add_parser(name, help=help_text, description=help_text, parents=below)
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


def _say(message: str) -> None:
    try:
        print(message, file=sys.stderr)
    except (OSError, ValueError):  # stderr closed too: nothing left to tell
        pass


def _os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return exc.strerror or str(exc) or type(exc).__name__


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's last flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    debug = False
    try:
        args = parser().parse_args(argv)
        debug = args.debug
        logging.basicConfig(
            level=(args.log_level or "warning").upper(),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except ConfigError as exc:
        for problem in exc.problems:
            _say(problem)
        return EXIT_PROBLEM
    except UsageError as exc:
        _say(f"opsmedic {args.command}: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        if argv is None:  # the program itself: do not wait for threads blocked in I/O
            _exit_now(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (PermanentError, OSError) as exc:
        if debug:
            traceback.print_exc()
        _say(f"opsmedic: {_os_error(exc) if isinstance(exc, OSError) else exc}")
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, not a traceback
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (run with --debug for the traceback)"
        _say(f"opsmedic: internal error: {type(exc).__name__}: {exc}{hint}")
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
