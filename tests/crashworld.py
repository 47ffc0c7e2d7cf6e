"""A world to crash a real `opsmedic run` in: the sandbox Kubernetes API server and toy web
services run in the test process; the daemon runs as a subprocess (`python -m daemon run`)
against a config and playbooks written to a temporary folder, and the test watches the
incident log read-only while it kills (-9), signals or restarts the daemon and faults the world.

What landed on a target is observed at the target, never taken from the log: every write that
reaches the Kubernetes API server is recorded with its time and the change mark opsmedic puts
on it, and the `command` actions run a script that appends each start and each heal to a file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from daemon.errors import PermanentError
from daemon.incidents import Event, EventKind, Incident, IncidentStore, Status
from daemon.sandbox.kubeapi import FakeCluster, ImageBehavior, KubeApiServer
from daemon.sandbox.kubeapi.cluster import Response
from daemon.sandbox.web import ToyWebService

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
CHANGE = "opsmedic.io/change"  # the mark opsmedic's Kubernetes actions put on what they change
NAMESPACE = "crash"
GOOD, BAD = "crash/app:1", "crash/app:2"
POLL = 0.02


def wait_for(condition: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)


# --- the Kubernetes API server: records every write, can hold one before it takes effect ----


@dataclass(frozen=True, kw_only=True)
class Write:
    """A mutating request as the API server saw it: when, what, the change mark it carried and
    its answer (None: dropped before it took effect)."""

    at: float
    method: str
    path: str
    change: str | None
    status: int | None

    @property
    def landed(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def incident(self) -> int | None:
        """The incident id in an `opsmedic-incident-<id>-attempt-<n>` change mark."""
        parts = (self.change or "").split("-")
        return int(parts[2]) if len(parts) == 5 and parts[2].isdigit() else None


@dataclass
class Hold:
    """Holds a matching request before the server acts on it, until released or dropped."""

    method: str
    path_suffix: str
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    dropped: bool = False

    def drop(self) -> None:
        """Let the held request go without acting on it (its client has gone away)."""
        self.dropped = True
        self.release.set()


def change_mark(body: Any) -> str | None:
    """The `opsmedic.io/change` annotation a write sets: merge patch, JSON patch or object."""
    if isinstance(body, list):  # a JSON patch
        for op in body:
            if isinstance(op, dict) and op.get("path") == "/metadata/annotations":
                value = op.get("value") or {}
                return value.get(CHANGE) if isinstance(value, dict) else None
            if isinstance(op, dict) and op.get("path", "").endswith("opsmedic.io~1change"):
                return str(op.get("value"))
        return None
    if isinstance(body, dict):
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        return annotations.get(CHANGE) if isinstance(annotations, dict) else None
    return None


class RecordingCluster(FakeCluster):
    """The sandbox cluster, recording each write that reaches it (with its time) and able to
    hold a request before it takes effect."""

    def __init__(self) -> None:
        super().__init__(time.time, restart_backoff=0.5)
        self.writes: list[Write] = []
        self.holds: list[Hold] = []
        self.write_lock = threading.Lock()

    def hold_before(self, method: str, path_suffix: str) -> Hold:
        hold = Hold(method, path_suffix)
        with self.write_lock:
            self.holds.append(hold)
        return hold

    def handle(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        if method == "GET":
            return super().handle(method, path, query, headers, body)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        mark = change_mark(parsed)
        with self.write_lock:
            hold = next(
                (h for h in self.holds if h.method == method and path.endswith(h.path_suffix)),
                None,
            )
            if hold is not None:
                self.holds.remove(hold)
        if hold is not None:
            hold.reached.set()
            hold.release.wait(timeout=60)
            if hold.dropped:
                with self.write_lock:
                    self.writes.append(
                        Write(at=time.time(), method=method, path=path, change=mark, status=None)
                    )
                return Response(503, b'{"kind":"Status","status":"Failure","code":503}')
        response = super().handle(method, path, query, headers, body)
        with self.write_lock:
            self.writes.append(
                Write(at=time.time(), method=method, path=path, change=mark, status=response.status)
            )
        return response

    def writes_to(self, namespace: str, deployment: str) -> list[Write]:
        """Writes to the deployment object itself (not its Events or subresources)."""
        suffix = f"/namespaces/{namespace}/deployments/{deployment}"
        with self.write_lock:
            return [w for w in self.writes if w.path.endswith(suffix)]


# --- a web service whose health can be broken and which can be taken down and brought back --


class Web:
    """A ToyWebService that can be stopped ("source down": connections are refused) and
    started again on the same address."""

    def __init__(self) -> None:
        self.service = ToyWebService().start()
        self.address = self.service.server.server_address[:2]
        self._serving: ThreadingHTTPServer | None = self.service.server

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def healthy(self) -> bool:
        return not self.service.dependency_down

    def break_dependency(self, down: bool = True) -> None:
        self.service.break_dependency(down)

    def down(self) -> None:
        if self._serving is not None:
            self._serving.shutdown()
            self._serving.server_close()
            self._serving = None

    def up(self) -> None:
        """Serve again on the same address, with the same state."""
        if self._serving is not None:
            return
        server = ThreadingHTTPServer(self.address, self.service.server.RequestHandlerClass)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        self._serving = server

    def stop(self) -> None:
        self.down()
        self.service.stop()  # its traffic thread; its server is already closed


# --- the command actions' script: counts runs and heals --------------------------------------

SCRIPT = """\
import json, os, sys, time, urllib.request
runs, started, delay, heal_url = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
key = os.environ.get("OPSMEDIC_IDEMPOTENCY_KEY", "")
def note(what):
    with open(runs, "a") as f:
        f.write(json.dumps({"key": key, "what": what, "at": time.time()}) + "\\n")
note("start")
open(started, "a").close()
time.sleep(delay)
if heal_url != "-":
    body = json.dumps({"dependency_down": False}).encode()
    req = urllib.request.Request(heal_url + "/admin/fault", data=body, method="POST")
    urllib.request.urlopen(req, timeout=5).read()
    note("healed")
else:
    note("done")
"""


@dataclass(frozen=True, kw_only=True)
class Run:
    key: str
    what: str
    at: float

    @property
    def incident(self) -> int | None:
        parts = self.key.split("-")
        return int(parts[2]) if len(parts) == 5 and parts[2].isdigit() else None


def command_runs(path: Path) -> list[Run]:
    if not path.exists():
        return []
    return [Run(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


# --- the daemon subprocess ---------------------------------------------------------------------


class Daemon:
    """`python -m daemon --log-level info run -c CONFIG`, its output in files (one pair per
    start), READY=1 read from a NOTIFY_SOCKET of its own."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.err_path = workdir / "daemon-0.err"
        self.notify_path = workdir / "notify.sock"

    def start(self, *, ready: bool = True, timeout: float = 15.0) -> Daemon:
        """Start it; with `ready`, wait for its READY=1."""
        assert not self.running(), "the daemon is already running"
        self.starts += 1
        self.err_path = self.workdir / f"daemon-{self.starts}.err"
        sock = None
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        if ready:
            self.notify_path.unlink(missing_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(self.notify_path))
            sock.settimeout(timeout)
            env["NOTIFY_SOCKET"] = str(self.notify_path)
        with (
            open(self.workdir / f"daemon-{self.starts}.out", "wb") as out,
            open(self.err_path, "wb") as err,
        ):
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daemon",
                    "--log-level",
                    "info",
                    "run",
                    "-c",
                    str(self.config),
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        if sock is not None:
            try:
                self._await_ready(sock, timeout)
            finally:
                sock.close()
        return self

    def _await_ready(self, sock: socket.socket, timeout: float) -> None:
        sock.settimeout(0.1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if sock.recv(4096).startswith(b"READY=1"):
                    return
            except TimeoutError:
                if not self.running():
                    raise AssertionError(
                        f"the daemon exited with {self.proc.returncode if self.proc else None} "
                        f"before it was ready; stderr:\n{self.stderr[-3000:]}"
                    ) from None
        raise AssertionError(f"daemon not ready after {timeout:g}s; stderr:\n{self.stderr}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def stderr(self) -> str:
        try:
            return self.err_path.read_text(errors="replace")
        except OSError:
            return ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def restart(self) -> Daemon:
        self.kill()
        return self.start()


# --- the incident log, read-only -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    incidents: list[Incident]
    events: dict[int, list[Event]]

    def of(self, playbook: str, labels: Mapping[str, str] | None = None) -> list[Incident]:
        """Incidents of a playbook whose labels include these, oldest first."""
        return sorted(
            (
                i
                for i in self.incidents
                if i.playbook == playbook
                and all(i.labels.get(k) == v for k, v in (labels or {}).items())
            ),
            key=lambda i: i.id,
        )

    def timeline(self, incident_id: int) -> str:
        return "\n".join(
            f"    {e.at:.3f} {e.kind.value}: {e.message[:160]}"
            for e in self.events.get(incident_id, [])
        )

    def describe(self) -> str:
        return "\n".join(
            f"  incident {i.id} {i.playbook} {dict(i.labels)} {i.status.value} "
            f"{i.resolution or ''}\n{self.timeline(i.id)}"
            for i in sorted(self.incidents, key=lambda i: i.id)
        )


class LogReader:
    def __init__(self, db: Path) -> None:
        self.db = db

    def snapshot(self) -> Snapshot:
        if not self.db.exists():
            return Snapshot(incidents=[], events={})
        try:
            store = IncidentStore(self.db, readonly=True)
        except (PermanentError, OSError, sqlite3.Error):  # being created: not there yet
            return Snapshot(incidents=[], events={})
        try:
            incidents = store.incidents(limit=10_000)
            return Snapshot(
                incidents=incidents, events={i.id: store.events(i.id) for i in incidents}
            )
        except sqlite3.Error:  # a log being created or migrated: look again
            return Snapshot(incidents=[], events={})
        finally:
            store.close()

    def wait_incidents(self, count: int, timeout: float = 20.0) -> int:
        """Wait, polling every 2 ms, until the log holds `count` incidents: to kill the daemon
        within milliseconds of a write, when its next writes follow as fast."""
        deadline = time.monotonic() + timeout
        conn = None
        try:
            while time.monotonic() < deadline:
                if conn is None and self.db.exists():
                    conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
                if conn is not None:
                    try:
                        (found,) = conn.execute("SELECT COUNT(*) FROM incidents").fetchone()
                    except sqlite3.Error:  # not created yet
                        found = 0
                    if found >= count:
                        return int(found)
                time.sleep(0.002)
        finally:
            if conn is not None:
                conn.close()
        raise AssertionError(f"timed out after {timeout:g}s waiting for {count} incident(s)")

    def wait(self, condition: Callable[[Snapshot], T], what: str, timeout: float = 20.0) -> T:
        last: list[Snapshot] = []

        def check() -> T:
            snap = self.snapshot()
            last[:] = [snap]
            return condition(snap)

        try:
            return wait_for(check, what, timeout)
        except AssertionError as exc:
            shown = last[0].describe() if last else "(no log)"
            raise AssertionError(f"{exc}; the log:\n{shown}") from None

    def quiet(
        self, done: Callable[[Snapshot], bool], *, settle: float = 0.6, timeout: float = 30.0
    ) -> Snapshot:
        """Wait until `done` holds and no event was written for `settle` seconds."""
        last_count, since = -1, time.monotonic()
        deadline = time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            count = sum(len(v) for v in snap.events.values())
            if count != last_count:
                last_count, since = count, time.monotonic()
            elif done(snap) and time.monotonic() - since >= settle:
                return snap
            if time.monotonic() > deadline:
                return snap
            time.sleep(POLL * 2)


# --- the world ---------------------------------------------------------------------------------


def yaml_value(value: Any) -> str:
    return json.dumps(value)


class CrashWorld:
    """The sandbox Kubernetes API server (namespace `crash`) and toy web services, in this
    process; configs, playbooks and incident logs under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cluster = RecordingCluster()
        self.cluster.behave(GOOD, ImageBehavior(ready_after=0.2))
        self.cluster.behave(
            BAD,
            ImageBehavior(
                ready_after=0.2,
                crash_after=0.2,
                logs=("app 2 starting", "panic: nil pointer in PriceCache"),
            ),
        )
        self.api = KubeApiServer(self.cluster).start()
        self.kubeconfig = self.api.write_kubeconfig(root / "kubeconfig", context="crash")
        self.webs: list[Web] = []
        self.daemons: list[Daemon] = []
        self.script = root / "act.py"
        self.script.write_text(SCRIPT)

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        for web in self.webs:
            web.stop()
        for hold in list(self.cluster.holds):
            hold.drop()
        self.api.stop()

    # -- targets
    def web(self) -> Web:
        web = Web()
        self.webs.append(web)
        return web

    def deploy(self, name: str, *, image: str = GOOD) -> None:
        self.cluster.apply(self.cluster.deployment_manifest(NAMESPACE, name, image, replicas=1))

    def available(self, name: str) -> bool:
        dep = self.cluster.get("Deployment", NAMESPACE, name) or {}
        status = dep.get("status") or {}
        spec = dep.get("spec") or {}
        meta = dep.get("metadata") or {}
        return (
            status.get("observedGeneration") == meta.get("generation")
            and status.get("updatedReplicas") == spec.get("replicas")
            and status.get("availableReplicas") == spec.get("replicas")
            and status.get("replicas") == spec.get("replicas")
        )

    def wait_available(self, *names: str, timeout: float = 15.0) -> None:
        wait_for(lambda: all(self.available(n) for n in names), f"{names} available", timeout)

    def image(self, name: str) -> str:
        dep = self.cluster.get("Deployment", NAMESPACE, name) or {}
        return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])

    def bad_release(self, name: str) -> None:
        """Roll out an image that crashes on start, like `kubectl set image`."""
        self.cluster.set_image(NAMESPACE, name, BAD, change_cause="release 2")

    def wedge(self, name: str) -> None:
        self.cluster.wedge(NAMESPACE, name)

    def undeploy(self, *names: str) -> None:
        for name in names:
            self.cluster.delete("Deployment", NAMESPACE, name)

    def changes(self, name: str) -> list[Write]:
        """Writes carrying an opsmedic change mark that reached the deployment."""
        return [w for w in self.cluster.writes_to(NAMESPACE, name) if w.change]

    # -- config
    def command(self, runs: Path, started: Path, *, delay: float, heal: Web | None) -> list[str]:
        return [
            sys.executable,
            str(self.script),
            str(runs),
            str(started),
            f"{delay:g}",
            heal.url if heal is not None else "-",
        ]

    def setup(
        self,
        name: str,
        playbooks: Mapping[str, str],
        *,
        shutdown_grace: float = 5.0,
    ) -> Setup:
        """A folder with a config (jitter 0s, console notifier off, the sandbox cluster) and
        these playbooks (file name → YAML text)."""
        folder = self.root / name
        (folder / "pb").mkdir(parents=True)
        for file, text in playbooks.items():
            (folder / "pb" / file).write_text(text)
        config = folder / "opsmedic.yaml"
        config.write_text(
            "playbooks: [pb]\n"
            "database: state/incidents.db\n"
            "jitter: 0s\n"
            "probe_retries: 0\n"
            f"shutdown_grace: {shutdown_grace:g}s\n"
            "notify: {console: false}\n"
            "kubernetes:\n"
            f"  default: {{kubeconfig: {yaml_value(str(self.kubeconfig))}, context: crash}}\n"
        )
        daemon = Daemon(config, folder)
        self.daemons.append(daemon)
        return Setup(
            folder=folder,
            daemon=daemon,
            log=LogReader(folder / "state" / "incidents.db"),
            db=folder / "state" / "incidents.db",
        )


@dataclass(frozen=True, kw_only=True)
class Setup:
    folder: Path
    daemon: Daemon
    log: LogReader
    db: Path

    @property
    def playbooks(self) -> Path:
        return self.folder / "pb"


# --- playbooks -------------------------------------------------------------------------------


def kubernetes_playbook(
    name: str,
    *,
    verify_after: float = 2.0,
    max_attempts: int = 2,
    cooldown: str = "0s",
    selector: str | None = None,
) -> str:
    """Deployments in the `crash` namespace: roll back a fresh bad release, else restart."""
    select = f"  selector: {yaml_value(selector)}\n" if selector else ""
    return (
        f"name: {name}\n"
        "severity: critical\n"
        "probe:\n"
        "  kind: kubernetes\n"
        f"  namespace: {NAMESPACE}\n"
        "  workloads: [Deployment]\n"
        f"{select}"
        "  every: 1s\n"
        "  for: 0s\n"
        "  restarts: {limit: 2, window: 1m}\n"
        "  evidence: {log_lines: 5}\n"
        "actions:\n"
        "  - id: rollback\n"
        "    uses: kubernetes.rollback\n"
        '    when: "evidence.image_changed and evidence.last_rollout_age_seconds < 600"\n'
        '    with: {namespace: "{{ labels.namespace }}", deployment: "{{ labels.name }}"}\n'
        "  - id: restart\n"
        "    uses: kubernetes.restart\n"
        '    with: {namespace: "{{ labels.namespace }}", deployment: "{{ labels.name }}"}\n'
        f"policy: {{max_attempts: {max_attempts}, verify_after: {verify_after:g}s, "
        f"cooldown: {cooldown}, action_retries: 0}}\n"
    )


def http_playbook(
    name: str,
    web: Web,
    argv: Sequence[str] | None,
    *,
    verify_after: float = 2.0,
    max_attempts: int = 1,
    unreachable: str = "breach",
    actions: int = 1,
    timeout: float = 30.0,
) -> str:
    """An http probe of a web service's /health; `actions` copies of a command action."""
    steps = "".join(
        f"  - id: act{n}\n"
        "    uses: command\n"
        f"    with: {{argv: {yaml_value(list(argv))}, timeout: {timeout:g}s}}\n"
        for n in range(1, actions + 1)
        if argv is not None
    )
    return (
        f"name: {name}\n"
        "severity: critical\n"
        f"probe: {{kind: http, url: '{web.url}/health', every: 1s, for: 0s, timeout: 2s, "
        f"unreachable: {unreachable}}}\n"
        f"actions:{' []' if not steps else ''}\n"
        f"{steps}"
        f"policy: {{max_attempts: {max_attempts}, verify_after: {verify_after:g}s, "
        "cooldown: 0s, action_retries: 0}\n"
    )


def first(snap: Snapshot, incident: Incident, kind: EventKind) -> Event | None:
    return next((e for e in snap.events.get(incident.id, []) if e.kind is kind), None)


def closed(incident: Incident) -> bool:
    return incident.status in (Status.RESOLVED, Status.ESCALATED)
