"""A real `opsmedic run` and the signals and neighbours a production daemon meets: a second
daemon on its incident log, SIGTERM in the middle of a verification, SIGHUP to reload."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from daemon.incidents import EventKind, Status
from tests.crashworld import (
    CrashWorld,
    Daemon,
    LogReader,
    Snapshot,
    command_runs,
    first,
    http_playbook,
    wait_for,
)

pytestmark = pytest.mark.slow

K = EventKind
T = TypeVar("T")


def while_alive(
    daemon: Daemon, log: LogReader, condition: Callable[[Snapshot], T], what: str, timeout: float
) -> T:
    """Wait for a condition on the log; fail at once (with its exit code) if the daemon dies."""

    def check() -> T:
        if not daemon.running():
            code = daemon.proc.returncode if daemon.proc else None
            raise AssertionError(
                f"the daemon exited with code {code} while waiting for {what}; stderr:\n"
                f"{daemon.stderr[-3000:]}"
            )
        return condition(log.snapshot())

    try:
        return wait_for(check, what, timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nthe log:\n{log.snapshot().describe()}") from None


# --- 5: one daemon per incident log ------------------------------------------------------------


def test_second_daemon_on_the_same_log_exits_3_naming_the_first(world: CrashWorld) -> None:
    web = world.web()
    setup = world.setup("s", {"web.yaml": http_playbook("web", web, None)})
    daemon = setup.daemon.start()
    (setup.folder / "second").mkdir()
    second = Daemon(daemon.config, setup.folder / "second")
    world.daemons.append(second)
    started = time.monotonic()
    second.start(ready=False)
    code = second.wait(timeout=5)  # within a few seconds
    err = second.stderr
    took = time.monotonic() - started
    assert code == 3, f"second daemon: exit code {code} after {took:.1f}s\n{err}"
    assert str(setup.db) in err, err
    assert re.search(rf"\bpid {daemon.pid}\b", err), err
    assert "Traceback" not in err, err
    assert daemon.running(), daemon.stderr
    web.break_dependency()  # the first daemon still does its job
    while_alive(daemon, setup.log, lambda s: s.of("web"), "the first daemon's incident", 10)


# --- 6: SIGTERM in the middle of a verification -----------------------------------------------


def test_sigterm_mid_verify_starts_nothing_new_and_resumes_on_restart(world: CrashWorld) -> None:
    web = world.web()
    runs = world.root / "runs.jsonl"
    noop = world.command(runs, world.root / "started", delay=0.0, heal=None)  # heals nothing
    grace = 1.0
    setup = world.setup(
        "s",
        {"web.yaml": http_playbook("web", web, noop, verify_after=4.0, max_attempts=2, actions=2)},
        shutdown_grace=grace,
    )
    daemon, log = setup.daemon, setup.log
    daemon.start()
    web.break_dependency()
    while_alive(
        daemon, log, lambda s: s.of("web") and first(s, s.of("web")[0], K.VERIFYING), "verify", 15
    )
    sent = time.time()
    daemon.signal(signal.SIGTERM)
    code = daemon.wait(timeout=grace + 4.0)
    assert code == 0, f"exit code {code} (None: still running)\n{daemon.stderr[-3000:]}"
    snap = log.snapshot()
    [incident] = snap.of("web")
    after = [e for e in snap.events[incident.id] if e.at >= sent]
    detail = f"\n{snap.describe()}"
    assert not [e for e in after if e.kind in (K.DIAGNOSED, K.ACTION_STARTED)], detail
    assert [e for e in after if e.kind is K.INTERRUPTED], f"no interrupted event{detail}"
    assert [r.what for r in command_runs(runs)] == ["start", "done"]
    daemon.start()  # a restart resumes the incident: verify fails, the second action, escalate
    snap = log.quiet(lambda s: s.of("web")[0].status is not Status.OPEN, settle=1.0, timeout=30)
    [incident] = snap.of("web")
    events = snap.events[incident.id]
    detail = f"\n{snap.describe()}\nruns: {command_runs(runs)}"
    assert incident.status is Status.ESCALATED, detail
    assert not [e for e in events if e.kind is K.RESOLVED], detail
    keys = [r.key for r in command_runs(runs) if r.what == "start"]
    assert len(keys) == len(set(keys)) <= 2, detail
    assert daemon.running()


# --- 7: SIGHUP reloads the playbooks ---------------------------------------------------------


def test_sighup_loads_an_added_playbook(world: CrashWorld) -> None:
    one, two = world.web(), world.web()
    setup = world.setup("s", {"one.yaml": http_playbook("one", one, None)})
    daemon, log = setup.daemon, setup.log
    daemon.start()
    two.break_dependency()
    (setup.playbooks / "two.yaml").write_text(http_playbook("two", two, None))
    daemon.signal(signal.SIGHUP)
    while_alive(daemon, log, lambda s: s.of("two"), "an incident of the added playbook", 10)
    assert re.search(r"reload", daemon.stderr, re.IGNORECASE), daemon.stderr[-3000:]
    assert daemon.running()


def test_sighup_with_a_broken_playbook_keeps_the_previous_config(world: CrashWorld) -> None:
    web = world.web()
    setup = world.setup("s", {"web.yaml": http_playbook("web", web, None)})
    daemon, log = setup.daemon, setup.log
    daemon.start()
    before = len(daemon.stderr)
    (setup.playbooks / "broken.yaml").write_text(
        "name: broken\n"
        "severity: critical\n"
        "probe:\n"
        "  kind: http\n"
        "  evry: 1s\n"  # line 5: an unknown field
        "  url: 'http://127.0.0.1:9/health'\n"
        "actions: []\n"
    )
    daemon.signal(signal.SIGHUP)
    wait_for(
        lambda: "broken.yaml:5" in daemon.stderr or not daemon.running(),
        "the reload error",
        10,
    )
    assert daemon.running(), f"exit code {daemon.proc.returncode if daemon.proc else None}"
    err = daemon.stderr[before:]
    assert re.search(r"broken\.yaml:5: probe\.evry", err), err
    # and says the configuration that was running goes on
    assert re.search(
        r"^.*reload.*(previous|keep|goes on|continu|still|unchanged).*$",
        err,
        re.IGNORECASE | re.MULTILINE,
    ), err
    assert "Traceback" not in err, err
    web.break_dependency()  # the previous playbooks still run
    while_alive(daemon, log, lambda s: s.of("web"), "an incident of the running playbook", 10)
    assert not log.snapshot().of("broken")


def test_sighup_after_removing_a_playbook_escalates_its_open_incident(world: CrashWorld) -> None:
    keep, gone = world.web(), world.web()
    noop = world.command(world.root / "runs.jsonl", world.root / "started", delay=0.0, heal=None)
    setup = world.setup(
        "s",
        {
            "keep.yaml": http_playbook("keep", keep, None),
            "gone.yaml": http_playbook("gone", gone, noop, verify_after=30.0),
        },
    )
    daemon, log = setup.daemon, setup.log
    daemon.start()
    gone.break_dependency()
    while_alive(
        daemon,
        log,
        lambda s: s.of("gone") and first(s, s.of("gone")[0], K.VERIFYING),
        "the incident to be verifying",
        15,
    )
    (setup.playbooks / "gone.yaml").unlink()
    daemon.signal(signal.SIGHUP)
    snap = while_alive(
        daemon,
        log,
        lambda s: s if first(s, s.of("gone")[0], K.ESCALATED) else None,
        "the orphaned incident to be escalated",
        10,
    )
    assert snap is not None
    [incident] = snap.of("gone")
    escalated = first(snap, incident, K.ESCALATED)
    assert escalated is not None
    assert "removed" in escalated.message.lower(), snap.describe()
    assert incident.status is Status.ESCALATED, snap.describe()
    assert daemon.running()
