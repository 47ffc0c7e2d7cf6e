"""Fault injection: a real `opsmedic run` killed with SIGKILL at every step of its remediations,
then restarted on the same incident log. What landed is observed at the targets (the sandbox
Kubernetes API server's writes, the command script's run log), never taken from the log."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from daemon.incidents import EventKind, Incident, Resolution, Status
from tests.crashworld import (
    BAD,
    GOOD,
    CrashWorld,
    Setup,
    Snapshot,
    Web,
    closed,
    command_runs,
    first,
    http_playbook,
    kubernetes_playbook,
    wait_for,
)

pytestmark = pytest.mark.slow

K = EventKind


# --- test 1: kill -9 at every step of four remediations at once --------------------------------


@dataclass(frozen=True)
class Lane:
    """One remediation that runs in every round: a fault, the playbook that handles it, and
    the event kinds to kill the daemon at (the first time each appears in its incident)."""

    name: str
    kinds: tuple[EventKind, ...]
    offset: int  # staggers this lane's kill points against the others' in the same round
    expect: str = Resolution.AUTO_REMEDIATED.value  # its outcome, however it is killed


LANES = (
    Lane(
        "rollback",  # a bad release crash-loops a deployment; kubernetes.rollback heals it
        (
            K.OPENED,
            K.EVIDENCE,
            K.CAUSES,
            K.DIAGNOSED,
            K.ACTION_STARTED,
            K.ACTION_FINISHED,
            K.VERIFYING,
            K.RESOLVED,
        ),
        0,
    ),
    Lane(
        "restart",  # wedged pods; kubernetes.restart heals them
        (
            K.OPENED,
            K.EVIDENCE,
            K.DIAGNOSED,
            K.ACTION_STARTED,
            K.ACTION_FINISHED,
            K.VERIFYING,
            K.RESOLVED,
        ),
        4,
    ),
    Lane(
        "heal",  # a web service's dependency is down; a `command` heals it
        (K.OPENED, K.DIAGNOSED, K.ACTION_STARTED, K.ACTION_FINISHED, K.VERIFYING, K.RESOLVED),
        2,
    ),
    Lane(
        "escalate",  # an http probe whose only action (a command) cannot heal it: escalates
        (
            K.OPENED,
            K.DIAGNOSED,
            K.ACTION_STARTED,
            K.ACTION_FINISHED,
            K.VERIFYING,
            K.VERIFY_FAILED,
            K.ESCALATED,
        ),
        5,
        Status.ESCALATED.value,
    ),
)
LANE_ROUNDS = max(len(lane.kinds) for lane in LANES)
VERIFY_AFTER = 1.5
LOST_AFTER = 10.0  # a fault without an incident this long after a (re)start is lost
RANDOM_KILLS = 4  # kills at random delays after the faults, in the rounds with fewest points


@dataclass(frozen=True)
class Kills:
    """Where to kill the daemon in one round: at the first `kind` event of a lane's incident
    (one per lane), and at delays (s) after the faults."""

    points: dict[str, EventKind]
    delays: tuple[float, ...] = ()


def kill_plan() -> list[Kills]:
    points = [
        {
            lane.name: lane.kinds[(r + lane.offset) % len(lane.kinds)]
            for lane in LANES
            if r < len(lane.kinds)
        }
        for r in range(LANE_ROUNDS)
    ]
    rng = random.Random(20240613)  # noqa: S311 - reproducible kill delays, not secrets
    delays: list[list[float]] = [[] for _ in points]
    fewest = sorted(range(len(points)), key=lambda r: (len(points[r]), -r))
    for n in range(RANDOM_KILLS):
        delays[fewest[n % 3]].append(round(rng.uniform(0.3, 6.0), 1))
    return [Kills(p, tuple(sorted(d))) for p, d in zip(points, delays, strict=True)]


PLAN = kill_plan()
PARTS = {"first-half": PLAN[: len(PLAN) // 2], "second-half": PLAN[len(PLAN) // 2 :]}


@dataclass
class Row:
    runs: int = 0
    lost: int = 0
    duplicates: int = 0
    false_auto: int = 0
    double_resolved: int = 0
    wrong_outcome: int = 0
    killed_after: list[str] = field(default_factory=list)  # the lane's last event at the kill
    outcomes: list[str] = field(default_factory=list)


TABLE: dict[str, Row] = {}
POSITIONS: set[tuple[str, str]] = set()  # (lane, its last event) at each kill, over all lanes
KILLS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def kill_point_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not TABLE:
        return
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in render(TABLE).splitlines():
                reporter.write_line(line)


def render(table: dict[str, Row]) -> str:
    head = f"{'kill point':<34} {'runs':>4} {'lost':>4} {'dups':>4} {'false-auto':>10} "
    head += f"{'2x-resolved':>11} {'wrong-outcome':>13}  {'killed after':<16} outcome(s)"
    lines = [head, "-" * len(head)]
    for point, row in table.items():
        lines.append(
            f"{point:<34} {row.runs:>4} {row.lost:>4} {row.duplicates:>4} {row.false_auto:>10} "
            f"{row.double_resolved:>11} {row.wrong_outcome:>13}  "
            f"{','.join(row.killed_after) or '-':<16} "
            f"{', '.join(row.outcomes)}"
        )
    total = Row()
    for row in table.values():
        total.runs += row.runs
        total.lost += row.lost
        total.duplicates += row.duplicates
        total.false_auto += row.false_auto
        total.double_resolved += row.double_resolved
        total.wrong_outcome += row.wrong_outcome
    lines.append(
        f"{'total':<34} {total.runs:>4} {total.lost:>4} {total.duplicates:>4} "
        f"{total.false_auto:>10} {total.double_resolved:>11} {total.wrong_outcome:>13}"
    )
    lines.append(
        "killed after: the lane's last event when the daemon died (its steps are written "
        "milliseconds apart, so a kill aimed at one may land after the next); for random "
        "kills: rollback/restart/heal/escalate"
    )
    lines.append(
        f"{len(KILLS)} kills; distinct (lane, last event) positions the kills hit, counting "
        f"every lane in flight: {len(POSITIONS)}"
    )
    return "\n".join(lines)


@dataclass
class Round:
    """The targets of one round, each new (fresh deployments, a fresh incident log)."""

    number: int
    world: CrashWorld
    heal_web: Web
    esc_web: Web
    setup: Setup
    heal_runs: Path
    esc_runs: Path
    injected: float = 0.0
    started: float = 0.0  # monotonic time of the daemon's last start
    kills: list[tuple[float, str]] = field(default_factory=list)

    @property
    def rollout(self) -> str:
        return f"ck{self.number}"

    @property
    def wedged(self) -> str:
        return f"cart{self.number}"

    def incidents(self, snap: Snapshot, lane: str) -> list[Incident]:
        return {
            "rollback": lambda: snap.of("k8s", {"name": self.rollout}),
            "restart": lambda: snap.of("k8s", {"name": self.wedged}),
            "heal": lambda: snap.of("heal"),
            "escalate": lambda: snap.of("esc"),
        }[lane]()

    def incident(self, snap: Snapshot, lane: str) -> Incident | None:
        """The lane's latest incident: the one that must end as the lane expects."""
        found = self.incidents(snap, lane)
        return max(found, key=lambda i: i.id) if found else None

    def all_closed(self, snap: Snapshot) -> bool:
        found = [self.incident(snap, lane.name) for lane in LANES]
        return all(i is not None and closed(i) for i in found)

    def settled(self, snap: Snapshot) -> bool:
        """Every lane's incident closed; or those there are closed and LOST_AFTER seconds
        went by since the daemon last started without the missing ones opening (lost)."""
        found = [(lane, self.incident(snap, lane.name)) for lane in LANES]
        if not all(closed(i) for _, i in found if i is not None):
            return False
        expected = all(i is not None and outcome(i) == lane.expect for lane, i in found)
        # a fault that read healthy for a moment comes back: wait for it (or give up)
        return expected or time.monotonic() - self.started > LOST_AFTER


def start_round(world: CrashWorld, number: int, heal_web: Web, esc_web: Web) -> Round:
    folder = f"round{number}"
    heal_runs, esc_runs = (world.root / f"{folder}.{n}.jsonl" for n in ("heal", "esc"))
    heal = world.command(heal_runs, world.root / f"{folder}.heal", delay=0.0, heal=heal_web)
    noop = world.command(esc_runs, world.root / f"{folder}.esc", delay=0.0, heal=None)
    setup = world.setup(
        folder,
        {
            "k8s.yaml": kubernetes_playbook("k8s", verify_after=VERIFY_AFTER),
            "heal.yaml": http_playbook("heal", heal_web, heal, verify_after=VERIFY_AFTER),
            "esc.yaml": http_playbook("esc", esc_web, noop, verify_after=VERIFY_AFTER),
        },
    )
    rnd = Round(number, world, heal_web, esc_web, setup, heal_runs, esc_runs)
    world.deploy(rnd.rollout)
    world.deploy(rnd.wedged)
    world.wait_available(rnd.rollout, rnd.wedged)
    setup.daemon.start()
    rnd.injected, rnd.started = time.time(), time.monotonic()
    world.bad_release(rnd.rollout)
    world.wedge(rnd.wedged)
    heal_web.break_dependency()
    esc_web.break_dependency()
    return rnd


@dataclass
class Verdict:
    lost: int = 0
    duplicates: int = 0
    false_auto: int = 0
    double_resolved: int = 0
    wrong_outcome: int = 0
    outcome: str = "no incident"
    problems: list[str] = field(default_factory=list)


def outcome(incident: Incident) -> str:
    return incident.resolution or incident.status.value


def judge(rnd: Round, snap: Snapshot, lane: str) -> Verdict:
    """The invariants of one lane after a round, checked against what reached the target."""
    verdict = Verdict()
    incident = rnd.incident(snap, lane)
    if incident is None:
        verdict.lost = 1
        verdict.problems.append(f"{lane}: the fault produced no incident")
        return verdict
    verdict.outcome = outcome(incident)
    expect = next(x.expect for x in LANES if x.name == lane)
    if verdict.outcome != expect:
        verdict.wrong_outcome = 1
        verdict.problems.append(
            f"{lane}: incident {incident.id} ended {verdict.outcome}, expected {expect}"
        )
    for earlier in rnd.incidents(snap, lane):
        # A fault may read healthy for a moment (a crash-looping pod between restarts): an
        # earlier incident is fine only as an honest `recovered`, where no action landed.
        events = snap.events.get(earlier.id, [])
        landed = [
            e
            for e in events
            if e.kind is K.ACTION_FINISHED or (e.kind is K.ACTION_RECONCILED and e.data["landed"])
        ]
        if earlier.id != incident.id and (earlier.resolution != "recovered" or landed):
            verdict.wrong_outcome = 1
            verdict.problems.append(
                f"{lane}: earlier incident {earlier.id} ended {earlier.resolution} with "
                f"{len(landed)} landed action(s); only an honest `recovered` may precede the last"
            )
    if not closed(incident):
        verdict.lost = 1
        verdict.problems.append(f"{lane}: incident {incident.id} still {incident.status.value}")
    events = snap.events.get(incident.id, [])
    resolved = [e for e in events if e.kind is K.RESOLVED]
    if len(resolved) > 1:
        verdict.double_resolved = 1
        verdict.problems.append(f"{lane}: incident {incident.id} resolved {len(resolved)} times")
    verify_failed = sum(1 for e in events if e.kind is K.VERIFY_FAILED)
    max_attempts = 2 if lane in ("rollback", "restart") else 1
    # what reached the target: (change key, when it landed) of each time it was acted on
    healing: list[tuple[str, float]]
    if lane in ("rollback", "restart"):
        name = rnd.rollout if lane == "rollback" else rnd.wedged
        landed = [w for w in rnd.world.changes(name) if w.landed]
        acted = [(w.change or "", w.at) for w in landed]
        healing = [(w.change or "", w.at) for w in landed if w.incident == incident.id]
        if lane == "rollback" and healing and rnd.world.image(name) != GOOD:
            healing = []
    else:
        runs = command_runs(rnd.heal_runs if lane == "heal" else rnd.esc_runs)
        acted = [(r.key, r.at) for r in runs if r.what == "start"]
        healing = [(r.key, r.at) for r in runs if r.what == "healed" and r.incident == incident.id]
    keys = [key for key, _ in acted]
    repeats = sum(keys.count(k) - 1 for k in set(keys))
    extra = max(0, len(set(keys)) - min(max_attempts, 1 + verify_failed))
    verdict.duplicates = repeats + extra
    if verdict.duplicates:
        verdict.problems.append(
            f"{lane}: incident {incident.id}: {len(keys)} action(s) reached the target "
            f"({keys}), {verify_failed} failed verification(s), max_attempts {max_attempts}"
        )
    if incident.resolution == Resolution.AUTO_REMEDIATED.value:
        at = resolved[-1].at if resolved else float("inf")
        if not any(t <= at for _, t in healing):
            verdict.false_auto = 1
            verdict.problems.append(
                f"{lane}: incident {incident.id} resolved auto-remediated but no change of its "
                f"actions healed the target before {at:.3f} (changes: {acted})"
            )
    return verdict


def play_round(
    world: CrashWorld,
    number: int,
    kills: Kills,
    heal_web: Web,
    esc_web: Web,
) -> tuple[dict[str, tuple[str, str, Verdict]], set[str], str]:
    """Run the four remediations, killing the daemon at the given points and restarting it;
    returns each lane's (kill point label, its last event at that kill, verdict), the points
    never reached, and the round's timelines."""
    rnd = start_round(world, number, heal_web, esc_web)
    daemon, log = rnd.setup.daemon, rnd.setup.log
    pending, delays = dict(kills.points), list(kills.delays)
    hit: dict[str, float] = {}
    deadline, all_closed_since = time.monotonic() + 40, None
    try:
        while (pending or delays) and time.monotonic() < deadline:
            snap = log.snapshot()
            reached = [
                name
                for name, kind in pending.items()
                if (i := rnd.incident(snap, name)) is not None and first(snap, i, kind) is not None
            ]
            due = [d for d in delays if time.time() - rnd.injected >= d]
            if reached or due:
                daemon.kill()
                killed = time.time()
                for name in reached:
                    rnd.kills.append((killed, f"{name}@{pending.pop(name).value}"))
                    hit[name] = killed
                for d in due:
                    delays.remove(d)
                    rnd.kills.append((killed, f"random@{d:g}s"))
                daemon.start(ready=False)
                rnd.started = time.monotonic()
                continue
            if delays or not rnd.settled(snap):
                all_closed_since = None
            elif all_closed_since is None:
                all_closed_since = time.monotonic()
            elif time.monotonic() - all_closed_since > 0.3:
                break  # every remediation ended: the remaining points cannot come any more
            time.sleep(0.02)
        snap = log.quiet(rnd.settled, settle=0.4, timeout=30)
        alive = daemon.running()
        for killed, _ in rnd.kills:
            KILLS.append(f"round {number} at {killed - rnd.injected:.2f}s")
            for lane in LANES:
                POSITIONS.add((lane.name, last_before(rnd, snap, lane.name, killed)))
        random_label = "random@" + "+".join(f"{d:g}s" for d in kills.delays)
        for killed, what in rnd.kills:
            if what.startswith("random@"):  # where every lane stood at a random kill
                TABLE.setdefault(random_label, Row()).killed_after.append(
                    "/".join(last_before(rnd, snap, lane.name, killed) for lane in LANES)
                )
        verdicts: dict[str, tuple[str, str, Verdict]] = {}
        for lane in LANES:
            after = "-"
            if lane.name in hit:
                label = f"{lane.name}@{kills.points[lane.name].value}"
                after = last_before(rnd, snap, lane.name, hit[lane.name])
            elif kills.delays:
                label = random_label
            elif lane.name in kills.points:
                label = f"{lane.name}@{kills.points[lane.name].value} (missed)"
            else:
                label = f"{lane.name}@(no kill point)"
            verdict = judge(rnd, snap, lane.name)
            if not alive:
                verdict.problems.append(f"the daemon exited by itself: {daemon.stderr[-2000:]}")
            verdicts[lane.name] = (label, after, verdict)
        details = (
            f"round {number}: kills "
            + ", ".join(f"{t - rnd.injected:.2f}s {what}" for t, what in rnd.kills)
            + f"\n{snap.describe()}"
        )
        return verdicts, {f"{name}@{kind.value}" for name, kind in pending.items()}, details
    finally:
        daemon.kill()
        heal_web.break_dependency(False)
        esc_web.break_dependency(False)
        world.undeploy(rnd.rollout, rnd.wedged)


def last_before(rnd: Round, snap: Snapshot, lane: str, at: float) -> str:
    """The lane's last event written before a kill (the daemon may run a few ms past the event
    the kill was aimed at: the steps of one decision are written within milliseconds)."""
    incident = rnd.incident(snap, lane)
    events = [e for e in snap.events.get(incident.id, []) if e.at <= at] if incident else []
    return events[-1].kind.value if events else "none"


@pytest.mark.parametrize("part", list(PARTS))
def test_kill9_at_every_step_loses_nothing_and_acts_once(world: CrashWorld, part: str) -> None:
    heal_web, esc_web = world.web(), world.web()
    problems: list[str] = []
    unreached: dict[str, EventKind] = {}
    number = list(PARTS).index(part) * 100
    rounds = list(PARTS[part])
    retried = False
    while rounds:
        kills = rounds.pop(0)
        number += 1
        verdicts, missed, details = play_round(world, number, kills, heal_web, esc_web)
        for lane, (label, after, verdict) in verdicts.items():
            row = TABLE.setdefault(label, Row())
            row.runs += 1
            row.lost += verdict.lost
            row.duplicates += verdict.duplicates
            row.false_auto += verdict.false_auto
            row.double_resolved += verdict.double_resolved
            row.wrong_outcome += verdict.wrong_outcome
            if after != "-":
                row.killed_after.append(after)
            row.outcomes.append(f"{lane}:{verdict.outcome}")
            if verdict.problems:
                problems.append(f"{label}: " + "; ".join(verdict.problems) + f"\n{details}")
        for point in missed:
            lane, _, kind = point.partition("@")
            unreached[lane] = EventKind(kind)
        if not rounds and unreached and not retried:
            # points another lane's kill made this lane skip: one more round for them
            rounds.append(Kills(dict(unreached)))
            unreached, retried = {}, True
    for lane, kind in unreached.items():
        TABLE.setdefault(f"{lane}@{kind.value} (never reached)", Row())
    assert not unreached, f"kill points never reached: {unreached}\n{render(TABLE)}"
    assert not problems, "\n\n".join(problems) + "\n\n" + render(TABLE)


def test_kill9_while_one_probe_cycle_opens_several_incidents_loses_none(
    world: CrashWorld,
) -> None:
    """Eight deployments wedge at once: one probe cycle fires eight series and opens eight
    incidents in a row. Killed as soon as the first is in the log, the restarted daemon must
    still open, restart and resolve every one of them, each restarted exactly once."""
    names = [f"web{n}" for n in range(8)]
    for name in names:
        world.deploy(name)
    world.wait_available(*names)
    setup = world.setup("s", {"k8s.yaml": kubernetes_playbook("k8s", verify_after=1.5)})
    daemon, log = setup.daemon, setup.log
    daemon.start()
    for name in names:
        world.wedge(name)
    log.wait_incidents(1)
    daemon.kill()
    opened = sorted(i.labels["name"] for i in log.snapshot().incidents)
    daemon.start()

    def all_closed(snap: Snapshot) -> bool:
        return all(
            snap.of("k8s", {"name": n}) and closed(snap.of("k8s", {"name": n})[0]) for n in names
        )

    snap = log.quiet(all_closed, settle=0.5, timeout=15)
    detail = f"\nopen when killed: {opened}\n{snap.describe()}"
    for name in names:
        found = snap.of("k8s", {"name": name})
        assert len(found) == 1, f"deployment {name}: {len(found)} incident(s){detail}"
        assert found[0].resolution == Resolution.AUTO_REMEDIATED.value, f"{name}{detail}"
        landed = [w for w in world.changes(name) if w.landed]
        assert len(landed) == 1, f"{name}: {len(landed)} restart(s) landed{detail}"


# --- test 2: killed between action_started and the request ----------------------------------


def test_kill_before_the_rollback_request_lands_reruns_it_once(world: CrashWorld) -> None:
    """The rollback's PATCH is held before it takes effect; the daemon dies; the request is
    dropped. The restarted daemon must not count the attempt (max_attempts 1, cooldown 10m),
    must roll back exactly once, and resolve auto-remediated only after verifying that
    landed rollback."""
    world.deploy("ck")
    world.wait_available("ck")
    playbook = kubernetes_playbook("k8s", max_attempts=1, cooldown="10m")
    setup = world.setup("s", {"k8s.yaml": playbook})
    daemon, log = setup.daemon, setup.log
    held = world.cluster.hold_before("PATCH", "/namespaces/crash/deployments/ck")
    daemon.start()
    world.bad_release("ck")
    wait_for(held.reached.is_set, "the rollback PATCH to reach the API server", 30)
    snap = log.snapshot()
    [incident] = snap.of("k8s", {"name": "ck"})
    assert first(snap, incident, K.ACTION_STARTED) is not None
    daemon.kill()
    held.drop()
    assert world.image("ck") == BAD, "the held rollback must not have landed"
    assert not [w for w in world.changes("ck") if w.landed]
    restarted = time.time()
    daemon.start()
    snap = log.quiet(lambda s: closed(s.of("k8s", {"name": "ck"})[0]), settle=1.0, timeout=40)
    [incident] = snap.of("k8s", {"name": "ck"})
    events = snap.events[incident.id]
    detail = f"\n{snap.describe()}\nwrites: {world.changes('ck')}"
    landed = [w for w in world.changes("ck") if w.landed]
    assert len(landed) == 1, f"the rollback must land exactly once{detail}"
    assert world.image("ck") == GOOD, detail
    assert incident.status is Status.RESOLVED, detail
    assert incident.resolution == Resolution.AUTO_REMEDIATED.value, detail
    assert not [e for e in events if e.kind is K.ESCALATED], detail
    [resolved] = [e for e in events if e.kind is K.RESOLVED]
    assert resolved.at > landed[0].at, detail
    assert any(e.kind is K.VERIFYING and landed[0].at <= e.at <= resolved.at for e in events), (
        f"resolved without verifying the landed rollback{detail}"
    )
    assert restarted < landed[0].at, detail


# --- test 3: killed while a command runs -----------------------------------------------------


def test_kill_while_a_command_runs_learns_its_result_and_does_not_rerun_it(
    world: CrashWorld,
) -> None:
    web = world.web()
    runs, started = world.root / "runs.jsonl", world.root / "started"
    argv = world.command(runs, started, delay=2.0, heal=web)
    setup = world.setup("s", {"heal.yaml": http_playbook("heal", web, argv, max_attempts=2)})
    daemon, log = setup.daemon, setup.log
    daemon.start()
    web.break_dependency()
    wait_for(started.exists, "the command to start", 20)
    snap = log.snapshot()
    [incident] = snap.of("heal")
    assert first(snap, incident, K.ACTION_STARTED) is not None
    assert first(snap, incident, K.ACTION_FINISHED) is None
    daemon.kill()
    assert not web.healthy, "the command should still be running"
    daemon.start()
    snap = log.quiet(lambda s: closed(s.of("heal")[0]), settle=1.0, timeout=30)
    [incident] = snap.of("heal")
    events = snap.events[incident.id]
    detail = f"\n{snap.describe()}\nruns: {command_runs(runs)}"
    assert [r.what for r in command_runs(runs)] == ["start", "healed"], (
        f"the command must run exactly once{detail}"
    )
    assert web.healthy
    assert incident.status is Status.RESOLVED, detail
    assert incident.resolution == Resolution.AUTO_REMEDIATED.value, detail
    assert not [e for e in events if e.kind is K.ESCALATED], detail
    [healed] = [r for r in command_runs(runs) if r.what == "healed"]
    [resolved] = [e for e in events if e.kind is K.RESOLVED]
    assert resolved.at > healed.at, detail


# --- test 4: killed during verify while the source is down ----------------------------------


def test_kill_during_verify_with_the_source_down_starts_no_action(world: CrashWorld) -> None:
    web = world.web()
    runs = world.root / "runs.jsonl"
    argv = world.command(runs, world.root / "started", delay=0.0, heal=web)
    playbook = http_playbook(
        "heal", web, argv, verify_after=3.0, max_attempts=2, actions=2, unreachable="error"
    )
    setup = world.setup("s", {"heal.yaml": playbook})
    daemon, log = setup.daemon, setup.log
    daemon.start()
    web.break_dependency()
    log.wait(lambda s: s.of("heal") and first(s, s.of("heal")[0], K.VERIFYING), "verifying")
    web.down()
    daemon.kill()
    restarted = time.time()
    daemon.start()
    # past verify_after and a few probe cycles with the source down, unless it escalates first
    deadline = time.monotonic() + 3.0 + 3.0
    while time.monotonic() < deadline:
        snap = log.snapshot()
        if snap.of("heal")[0].status is not Status.OPEN:
            break
        time.sleep(0.05)
    snap = log.snapshot()
    [incident] = snap.of("heal")
    after = [e for e in snap.events[incident.id] if e.at >= restarted]
    detail = f"\n{snap.describe()}\nruns: {command_runs(runs)}"
    assert not [e for e in after if e.kind is K.ACTION_STARTED], (
        f"an action started while the re-check was inconclusive{detail}"
    )
    assert not [e for e in after if e.kind is K.RESOLVED], detail
    if incident.status is Status.ESCALATED:
        [escalated] = [e for e in after if e.kind is K.ESCALATED]
        assert "inconclusive" in escalated.message, detail
    else:
        assert incident.status is Status.OPEN, detail
    assert daemon.running(), daemon.stderr
    web.up()  # the source answers again: the heal had landed
    snap = log.quiet(lambda s: s.of("heal")[0].status is Status.RESOLVED, settle=1.0, timeout=20)
    [incident] = snap.of("heal")
    detail = f"\n{snap.describe()}\nruns: {command_runs(runs)}"
    assert incident.status is Status.RESOLVED, detail
    assert not [
        e for e in snap.events[incident.id] if e.kind is K.ACTION_STARTED and e.at >= restarted
    ], detail
    assert [r.what for r in command_runs(runs)] == ["start", "healed"], detail
