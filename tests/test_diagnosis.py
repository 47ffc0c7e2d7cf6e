"""Causes from evidence and history (real event, state and log shapes, and near misses that must
not match), each action kind's table, and the rules policy built on them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.actions import ACTIONS
from daemon.agents import AGENTS, DiagnosisRequest
from daemon.clock import FakeClock
from daemon.config import Settings
from daemon.diagnosis import (
    CAUSES,
    Cause,
    DiagnosisSettings,
    PastAction,
    PastIncident,
    Patterns,
    examine,
    find_causes,
)
from daemon.diagnosis.patterns import BUILTIN
from daemon.engine import Engine
from daemon.incidents import Incident, IncidentStore, Resolution, Status
from daemon.kube.cluster import KubernetesCluster
from daemon.notify.slack import SlackNotifier
from daemon.playbook import load_playbooks, parse_playbook
from daemon.sandbox.kubeapi import FakeCluster, ImageBehavior, KubeApiServer
from daemon.yamlsource import Source
from tests.fakes.slack import FakeSlack

SETTINGS = DiagnosisSettings()
NOW = 1_700_000_000.0


def names(evidence: Mapping[str, Any], **kw: Any) -> list[str]:
    return [c.cause for c in find_causes(evidence, now=NOW, settings=SETTINGS, **kw)]


def log(*lines: str) -> dict[str, Any]:
    return {"logs": [{"pod": "p-1", "container": "c", "previous": True, "lines": list(lines)}]}


def event(reason: str, message: str, obj: str = "Pod/web-1") -> dict[str, Any]:
    return {"type": "Warning", "reason": reason, "object": obj, "message": message, "count": 3}


def container(state: str, reason: str = "", **extra: Any) -> dict[str, Any]:
    return {"pods": [{"name": "web-1", "containers": [{"name": "web", "state": state,
                                                       "reason": reason, **extra}]}]}  # fmt: skip


# --- Kubernetes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "variant"),
    [
        ('Failed to pull image "r.example.com/web:v9": rpc error: code = NotFound desc = '
         "failed to pull and unpack image: not found", "not found"),
        ('Failed to pull image "r.example.com/web:v9": failed to authorize: 401 Unauthorized',
         "unauthorized"),
    ],
)  # fmt: skip
def test_image_pull_failures_are_bad_image_with_the_reason(message: str, variant: str) -> None:
    evidence = {**container("waiting", "ImagePullBackOff"), "warning_events": [
        event("Failed", message)]}  # fmt: skip
    causes = find_causes(evidence, now=NOW, settings=SETTINGS)
    bad = next(c for c in causes if c.cause == "bad_image")
    assert f"({variant})" in bad.detail and "r.example.com/web:v9" in bad.detail


def test_missing_secret_is_a_config_error_not_a_crash() -> None:
    evidence = {
        **container("waiting", "CreateContainerConfigError"),
        "warning_events": [event("Failed", 'Error: secret "payments-db" not found')],
    }
    assert names(evidence) == ["config_error"]


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        ("0/12 nodes are available: 3 Insufficient cpu, 9 node(s) had untolerated taint "
         "{dedicated: gpu}. preemption: 0/12 nodes are available", "no_capacity"),
        ("0/6 nodes are available: 6 node(s) didn't match Pod's node affinity/selector.",
         "no_capacity"),
        ("0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
         "volume_error"),
    ],
)  # fmt: skip
def test_failed_scheduling_reads_why(message: str, cause: str) -> None:
    assert names({"warning_events": [event("FailedScheduling", message)]}) == [cause]


def test_quota_node_and_disruption_events() -> None:
    quota = event(
        "FailedCreate",
        'Error creating: pods "web-7d-x" is forbidden: exceeded quota: compute, requested: '
        "limits.memory=2Gi, used: limits.memory=15Gi, limited: limits.memory=16Gi",
        "ReplicaSet/web-7d",
    )
    assert names({"warning_events": [quota]}) == ["quota_exceeded"]
    assert names({"warning_events": [event("NodeNotReady", "Node is not ready")]}) == ["node_lost"]
    evicted = event("Evicted", "The node was low on resource: ephemeral-storage.")
    assert names({"warning_events": [evicted]}) == ["disrupted"]


def test_crash_loop_reads_the_exit_code_and_oom_is_not_a_crash_loop() -> None:
    crash = container(
        "waiting", "CrashLoopBackOff", last_termination={"reason": "Error", "exit_code": 78}
    )
    assert names(crash) == ["crashloop", "config_error"]  # 78 is EX_CONFIG
    oom = container("running", last_termination={"reason": "OOMKilled", "exit_code": 137})
    oom["problems"] = ["pod web-1 container web: OOMKilled"]
    assert names(oom) == ["oom"]


def test_an_old_oom_kill_the_probe_no_longer_reports_is_not_a_cause() -> None:
    old = container("running", last_termination={"reason": "OOMKilled", "exit_code": 137})
    assert names({**old, "problems": []}) == []


def test_a_logged_exit_code_names_its_cause() -> None:
    evidence = log("exiting: could not get lock")
    evidence["logs"][0].update(exit_code=75, reason="Error")
    assert "transient" in names(evidence)  # EX_TEMPFAIL


def test_consecutive_failed_runs_are_a_repeated_failure() -> None:
    runs = [{"name": f"load-{i}", "succeeded": 0, "failed": 1} for i in range(3)]
    assert names({"recent_jobs": [{"name": "load-0", "succeeded": 1}, *runs[1:]]}) == [
        "repeated_failure"
    ]
    once = [{"name": "load-1", "succeeded": 1, "failed": 0}, runs[2]]
    assert names({"recent_jobs": once}) == []


def test_fresh_release_needs_a_changed_image_and_a_breach_soon_after() -> None:
    base = {"image_changed": True, "last_rollout_age_seconds": 400, "images": {"web": "w:2"}}
    seen = examine(base, breach_age=120, past=(), attempts={}, now=NOW, settings=SETTINGS)
    assert seen.evidence["breach_after_rollout_seconds"] == 280
    assert [c.cause for c in seen.causes] == ["fresh_release"]
    old = {**base, "last_rollout_age_seconds": 3 * 86400}  # broke days after the rollout
    assert not examine(old, breach_age=120, past=(), attempts={}, now=NOW, settings=SETTINGS).causes
    restart_only = {**base, "image_changed": False}  # a restart is a rollout too
    assert not examine(
        restart_only, breach_age=120, past=(), attempts={}, now=NOW, settings=SETTINGS
    ).causes


# --- patterns ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "cause"),
    [
        ('ERROR db: FATAL: password authentication failed for user "app" (SQLSTATE 28P01)',
         "auth_failed"),
        ('google.auth.exceptions.RefreshError: (\'invalid_grant: Token has been expired\')',
         "auth_failed"),
        ("x509: certificate has expired or is not yet valid: current time 2025-03-11",
         "cert_expired"),
        ("OSError: [Errno 28] No space left on device: '/scratch/part-0001.parquet'", "disk_full"),
        ('psycopg2.errors.UndefinedColumn: column "discount_code" does not exist', "schema_change"),
        ("BadRequest: 400 Provided Schema does not match Table raw.events. Field amount has "
         "changed type from NUMERIC to STRING", "schema_change"),
        ('invalid input syntax for type integer: "N/A"', "data_error"),
        ('duplicate key value violates unique constraint "orders_pkey"', "data_error"),
        ("ERROR could not obtain lock on relation inventory_snapshot", "lock_held"),
        ("HTTP 429 Too Many Requests: retry after 60s", "rate_limited"),
        ("requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, "
         "'Connection reset by peer'))", "transient"),
        ("psycopg2.OperationalError: could not translate host name \"pg\" to address: "
         "Temporary failure in name resolution", "transient"),
        ("dial tcp 10.1.2.3:5432: connect: connection refused", "dependency_down"),
        ('panic: upstream catalog: time: invalid duration "1500"', "config_error"),
    ],
)  # fmt: skip
def test_log_patterns(line: str, cause: str) -> None:
    assert names(log(line)) == [cause]


@pytest.mark.parametrize(
    "line",
    [
        "2025-03-11 04:12:38 INFO loader: schema registry subject orders-value version 12",
        "2025-03-11T09:19:41Z INFO db: connecting; retried after connection refused",
        '{"level":"debug","msg":"lock released by pid 2231"}',
        "processed 429 rows in 3.1s",
        "2025-03-11 04:12:38 loaded 12,000 rows into warehouse.orders",
    ],
)
def test_near_misses_are_not_causes(line: str) -> None:
    assert names(log(line)) == []


def test_kubelet_probe_failures_are_not_a_dependency_outage() -> None:
    probe = event(
        "Unhealthy",
        'Readiness probe failed: Get "http://10.0.1.212:8080/readyz": dial tcp 10.0.1.212:8080: '
        "connect: connection refused",
    )
    assert names({"warning_events": [probe]}) == []


def test_user_patterns_extend_a_cause_or_define_a_new_one() -> None:
    patterns = Patterns.build(
        {"vendor_outage": [r"acme-pay\.example.*(503|unavailable)"]},
        {"lock_held": [r"batch \d+ is still being written"]},
    )
    line = "ERROR POST https://acme-pay.example/v2/charge: 503"
    assert names(log(line), user_patterns=patterns) == ["vendor_outage"]
    assert names(log(line)) == []  # no built-in pattern matches it
    written = log("ERROR batch 1193 is still being written")
    assert names(written, user_patterns=patterns) == ["lock_held"] and names(written) == []


def test_every_builtin_pattern_names_a_known_cause_and_every_cause_is_documented() -> None:
    assert {c for c, _ in BUILTIN} <= set(CAUSES)
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [c for c in CAUSES if f"`{c}`" not in readme]
    assert not missing, f"README does not document {missing}"


# --- canary, http, freshness --------------------------------------------------------------------


def test_canary_failed_only_on_steps_without_significance_is_weak() -> None:
    weak = {
        "verdict": "fail",
        "reason": "4 failed checks > failure_limit 2",
        "metrics": [{"metric": "error-ratio", "p_value": 0.41, "significant": False}],
    }
    assert names(weak) == ["canary_weak"]
    strong = {**weak, "metrics": [{"metric": "error-ratio", "p_value": 0.001, "significant": True}]}
    assert names(strong) == []
    assert names({"verdict": "fail", "metrics": [{"metric": "e"}]}) == []  # no test: not weak
    assert names({"verdict": "inconclusive", "reason": "no canary traffic"}) == [
        "canary_inconclusive"
    ]


def test_unreachable_http_target_reasons() -> None:
    expired = {"unreachable": {"reason": "tls", "detail": "certificate verify failed: "
                               "certificate has expired (_ssl.c:1006)"}}  # fmt: skip
    assert names(expired) == ["cert_expired"]
    assert names({"unreachable": {"reason": "tls", "detail": "wrong version number"}}) == [
        "config_error"
    ]
    assert names({"unreachable": {"reason": "dns", "detail": "Name or service not known"}}) == [
        "dependency_down"
    ]
    assert names({"unreachable": {"reason": "timeout", "detail": "timed out after 10s"}}) == []


def test_upstream_with_nothing_newer_is_stale_and_with_newer_rows_is_not() -> None:
    mine = {"age_seconds": 9000, "max_loaded_at": NOW - 9000}
    assert names({**mine, "upstream_loaded_at": NOW - 9500, "upstream_age_seconds": 9500}) == [
        "upstream_stale"
    ]
    assert names({**mine, "upstream_loaded_at": NOW - 60, "upstream_age_seconds": 60}) == []
    assert names({**mine, "upstream_loaded_at": None, "upstream_age_seconds": None}) == [
        "upstream_stale"
    ]


# --- history -------------------------------------------------------------------------------------


def past(ago: float, resolution: str | None, *actions: tuple[str, str, bool]) -> PastIncident:
    at = NOW - ago
    return PastIncident(
        id=int(ago),
        opened_at=at,
        resolution=resolution,
        actions=tuple(PastAction(action=a, uses=u, ok=ok, at=at) for a, u, ok in actions),
    )


RESTART = ("restart", "kubernetes.restart", True)


def test_a_fourth_action_within_the_hour_is_flapping() -> None:
    three = [past(m * 60, "auto-remediated", RESTART) for m in (10, 30, 50)]
    assert "flapping" in names({}, past=three)
    assert "flapping" not in names({}, past=three[:2])
    assert "flapping" not in names({}, past=[past(m * 3600, "auto-remediated", RESTART)
                                             for m in (2, 3, 4)])  # fmt: skip


def test_did_not_stick_names_the_action_kind_that_healed() -> None:
    [cause] = find_causes({}, past=[past(40 * 60, "auto-remediated", RESTART)], now=NOW,
                          settings=SETTINGS)  # fmt: skip
    assert (cause.cause, cause.uses) == ("did_not_stick", "kubernetes.restart")
    assert names({}, past=[past(14 * 86400, "auto-remediated", RESTART)]) == []


def test_an_action_that_did_not_heal_the_last_failure_is_a_repeated_failure() -> None:
    rerun = ("rerun", "kubernetes.rerun_job", True)
    [cause] = find_causes({}, past=[past(3600, None, rerun)], now=NOW, settings=SETTINGS)
    assert (cause.cause, cause.uses) == ("repeated_failure", "kubernetes.rerun_job")


def test_the_incident_log_gives_history_across_restarts(store: IncidentStore) -> None:
    old, _ = store.open(
        fingerprint="f", playbook="p", labels={}, severity="warning", summary="s", value=1,
        at=NOW - 1800,
    )  # fmt: skip
    data = {"action": "restart", "uses": "kubernetes.restart", "attempt": 1}
    store.append(old.id, "action_started", "restart", at=NOW - 1790, data=data)
    store.append(old.id, "action_finished", "ok", at=NOW - 1780, data={**data, "ok": True})
    store.set_status(old.id, Status.RESOLVED, at=NOW - 1700, resolution=Resolution.AUTO_REMEDIATED)
    [found] = store.history("f", since=NOW - 3600, other_than=0)
    assert found.resolution == "auto-remediated"
    assert found.actions == (
        PastAction(action="restart", uses="kubernetes.restart", ok=True, at=NOW - 1780),
    )
    assert store.history("f", since=NOW - 600, other_than=0) == []


# --- action kinds' tables ---------------------------------------------------------------------


def test_every_action_kind_declares_a_remedy_in_known_causes() -> None:
    for uses, kind in ACTIONS:
        remedy = kind.remedy
        declared = remedy.helps | remedy.cannot_help | remedy.requires | set(remedy.unless)
        assert declared <= set(CAUSES), uses


@pytest.mark.parametrize("uses", ["kubernetes.restart", "kubernetes.rerun_job", "command", "http"])
@pytest.mark.parametrize(
    "cause",
    ["auth_failed", "cert_expired", "disk_full", "quota_exceeded", "no_capacity",
     "schema_change", "data_error", "dependency_down", "flapping", "repeated_failure"],
)  # fmt: skip
def test_restart_and_rerun_cannot_help_what_needs_a_human(uses: str, cause: str) -> None:
    assert ACTIONS.get(uses).remedy.vetoes([Cause.of(cause, "test", "x")], uses)
    assert not ACTIONS.get(uses).remedy.vetoes([Cause.of("transient", "test", "x")], uses)


def test_rollback_helps_a_bad_image_only_after_a_fresh_release() -> None:
    rollback = ACTIONS.get("kubernetes.rollback").remedy
    bad = Cause.of("bad_image", "test", "ImagePullBackOff")
    fresh = Cause.of("fresh_release", "rollout", "revision 3")
    assert rollback.vetoes([bad], "kubernetes.rollback")
    assert not rollback.vetoes([bad, fresh], "kubernetes.rollback")
    assert rollback.missing([bad]) == "fresh_release" and rollback.missing([fresh]) is None


def test_backoff_suits_waiting_causes_and_not_a_schema_change() -> None:
    backoff = ACTIONS.get("backoff").remedy
    for cause in ("rate_limited", "lock_held", "transient", "dependency_down"):
        assert cause in backoff.helps and not backoff.vetoes([Cause.of(cause, "t", "x")], "backoff")
    assert backoff.vetoes([Cause.of("schema_change", "t", "x")], "backoff")


# --- the rules policy -------------------------------------------------------------------------


def playbook(*actions: dict[str, Any], causes: dict[str, list[str]] | None = None) -> Any:
    document: dict[str, Any] = {
        "name": "shop",
        "probe": {"kind": "kubernetes", "namespace": "shop"},
        "actions": list(actions),
    }
    if causes:
        document["causes"] = causes
    return parse_playbook(Source(path=Path("pb.yaml"), data=document, lines={}))


ROLLBACK = {
    "id": "rollback",
    "uses": "kubernetes.rollback",
    "when": "evidence.image_changed and evidence.last_rollout_age_seconds < 1800",
    "with": {"namespace": "shop", "deployment": "web"},
}
RESTART_STEP = {"id": "restart", "uses": "kubernetes.restart",
                "with": {"namespace": "shop", "deployment": "web"}}  # fmt: skip
WAIT = {"id": "wait", "uses": "backoff", "with": {"initial": "5m"}}


async def decide(pb: Any, evidence: dict[str, Any], **kw: Any) -> Any:
    incident = Incident(
        id=1, fingerprint="f", playbook=pb.name, labels={"name": "web"}, severity="warning",
        status=Status.OPEN, summary="web is down", value=1.0, opened_at=NOW, updated_at=NOW,
    )  # fmt: skip
    seen = examine(evidence, breach_age=60, past=kw.pop("past", ()), attempts={}, now=NOW,
                   settings=SETTINGS, playbook_patterns=pb.causes)  # fmt: skip
    context = {"labels": {"name": "web"}, "value": 1.0, "evidence": dict(seen.evidence),
               "causes": [c.cause for c in seen.causes], "incident": {}}  # fmt: skip
    request = DiagnosisRequest(incident=incident, playbook=pb, context=context, causes=seen.causes)
    return await AGENTS.get("rules")().diagnose(request)


SECRET_ROTATED = log('FATAL: password authentication failed for user "app"')


async def test_catch_all_restart_is_withheld_and_the_reason_quotes_the_evidence() -> None:
    decision = await decide(playbook(ROLLBACK, RESTART_STEP), SECRET_ROTATED)
    assert decision.action == "escalate"
    assert decision.reason.startswith("auth_failed (logs p-1/c: 'FATAL: password authentication")
    assert "restart: kubernetes.restart cannot help auth_failed" in decision.reason


async def test_an_action_whose_when_holds_wins_over_a_cause_time_may_clear() -> None:
    fresh = {"image_changed": True, "last_rollout_age_seconds": 300}
    lock = log("ERROR could not obtain lock within 300s")
    decision = await decide(playbook(ROLLBACK, RESTART_STEP), {**lock, **fresh})
    assert decision.action == "rollback"


async def test_a_cause_that_needs_a_human_holds_back_even_a_when() -> None:
    evidence = {**SECRET_ROTATED, "image_changed": True, "last_rollout_age_seconds": 300}
    decision = await decide(playbook(ROLLBACK, RESTART_STEP), evidence)
    assert decision.action == "escalate" and decision.reason.startswith("auth_failed")


async def test_the_next_action_that_can_help_is_chosen() -> None:
    lock = log("ERROR could not obtain lock within 300s: lock held by pid 28114")
    rerun = {"id": "rerun", "uses": "kubernetes.rerun_job",
             "with": {"namespace": "etl", "cronjob": "snapshot"}}  # fmt: skip
    assert (await decide(playbook(rerun, WAIT), lock)).action == "wait"


async def test_no_cause_keeps_the_catch_all() -> None:
    assert (await decide(playbook(ROLLBACK, RESTART_STEP), {})).action == "restart"


async def test_flapping_holds_back_even_an_action_whose_when_holds() -> None:
    evidence = {"image_changed": True, "last_rollout_age_seconds": 300}
    three = [past(m * 60, "auto-remediated", ("rollback", "kubernetes.rollback", True))
             for m in (10, 20, 30)]  # fmt: skip
    decision = await decide(playbook(ROLLBACK, RESTART_STEP), evidence, past=three)
    assert decision.action == "escalate" and decision.reason.startswith("flapping")


async def test_ignore_causes_opts_an_action_out() -> None:
    opted = {**RESTART_STEP, "ignore_causes": ["auth_failed"]}
    assert (await decide(playbook(ROLLBACK, opted), SECRET_ROTATED)).action == "restart"
    everything = {**RESTART_STEP, "ignore_causes": True}
    assert (await decide(playbook(ROLLBACK, everything), SECRET_ROTATED)).action == "restart"


async def test_a_playbook_defined_cause_is_one_no_kind_can_help() -> None:
    pb = playbook(RESTART_STEP, causes={"vendor_outage": [r"acme-pay\.example.*503"]})
    decision = await decide(pb, log("ERROR POST https://acme-pay.example/charge: 503"))
    assert decision.action == "escalate" and decision.reason.startswith("vendor_outage")


async def test_causes_are_usable_in_when() -> None:
    lock = log("ERROR could not obtain lock within 300s")
    step = {**WAIT, "when": "'lock_held' in causes"}
    assert (await decide(playbook(step), lock)).action == "wait"
    assert (await decide(playbook(step), {})).action == "escalate"


# --- through the engine: a real (sandbox) cluster and Slack through slack-sdk ------------------


async def test_engine_withholds_a_catch_all_restart_and_escalates_with_the_cause(
    tmp_path: Path,
    cluster: FakeCluster,
    server: KubeApiServer,
    store: IncidentStore,
    clock: FakeClock,
) -> None:
    cluster.behave(
        "shop/api:1",
        ImageBehavior(
            crash_after=0.5,
            logs=("starting", 'FATAL: password authentication failed for user "api"'),
        ),
    )
    cluster.apply(cluster.deployment_manifest("shop", "api", "shop/api:1"))
    await clock.advance(60)
    document = {
        "name": "shop",
        "probe": {"kind": "kubernetes", "namespace": "shop", "every": "10s"},
        "actions": [ROLLBACK, {**RESTART_STEP, "with": {"namespace": "shop", "deployment": "api"}}],
        "escalate": {"slack": {"channel": "#ops"}},
    }
    (tmp_path / "pb").mkdir()
    (tmp_path / "pb" / "shop.yaml").write_text(yaml.safe_dump(document))
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", context="test")
    with FakeSlack() as slack:
        loop = Engine(
            playbooks=load_playbooks([tmp_path / "pb"]),
            store=store,
            notifiers=[
                SlackNotifier(
                    token=slack.token,
                    channel="#ops",
                    clock=clock,
                    base_url=slack.base_url,
                    retries=0,
                )
            ],  # fmt: skip
            clock=clock,
            settings=Settings(
                probe_retries=0,
                kubernetes={"default": KubernetesCluster(kubeconfig=kubeconfig, context="test")},
            ),
        )
        await loop.start(schedule=False)
        await loop.tick("shop")
        await loop.idle()
        [incident] = store.incidents()
        assert store.get(incident.id).status is Status.ESCALATED  # type: ignore[union-attr]
        assert store.action_attempts(incident.id) == {}  # the restart was never run
        assert not [r for r in cluster.requests if r.verb == "patch"]
        causes = store.events(incident.id, kind="causes")[-1].data["causes"]
        assert [c["cause"] for c in causes] == ["crashloop", "auth_failed"]
        [escalated] = store.events(incident.id, kind="escalated")
        assert escalated.message.startswith("auth_failed")
        [message] = slack.messages("#ops")
        assert "Causes found:" in message["text"] and "`auth_failed`" in message["text"]
        assert "password authentication failed" in message["text"]
        await loop.stop(grace=0)
