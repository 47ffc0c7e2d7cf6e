"""Detector semantics, driven by a compact series notation like promtool's:

`1` breach, `0` ok, `_` series missing from the scan, `e` probe error, `n` no data;
`1x3` is three breaches in a row. One token per scan, `step` seconds apart."""

from __future__ import annotations

import re
from dataclasses import replace

from daemon.detector import Detector, Phase, SeriesState, fingerprint
from daemon.incidents import IncidentStore
from probes.base import Outcome, Reading

LABELS = {"deployment": "checkout"}
CODES = {"1": Outcome.BREACH, "0": Outcome.OK, "n": Outcome.NO_DATA}


def expand(series: str) -> list[str]:
    out: list[str] = []
    for token in series.split():
        match = re.fullmatch(r"(.)x(\d+)", token)
        out += [match.group(1)] * int(match.group(2)) if match else [token]
    return out


def run(series: str, *, step: float = 10, **kwargs: object) -> list[tuple[int, Phase]]:
    """Feed the series; return (scan index, phase) for every transition."""
    detector = Detector("pb", **kwargs)  # type: ignore[arg-type]
    result = []
    for index, token in enumerate(expand(series)):
        if token == "_":
            readings = []
        elif token == "e":
            readings = [Reading(outcome=Outcome.ERROR, message="boom")]
        else:
            readings = [Reading(outcome=CODES[token], labels=LABELS, value=1.0)]
        for t in detector.observe(readings, at=index * step):
            result.append((index, t.phase))
    return result


def test_breach_fires_only_after_for_has_elapsed() -> None:
    assert run("0 1 1 1 1", for_=30) == [(1, Phase.PENDING), (4, Phase.FIRING)]


def test_breach_without_for_fires_at_once() -> None:
    assert run("0 1", for_=0) == [(1, Phase.PENDING), (1, Phase.FIRING)]


def test_breach_shorter_than_for_never_fires() -> None:
    assert run("1 1 0 1 1 0", for_=30) == [(0, Phase.PENDING), (3, Phase.PENDING)]


def test_ok_resolves_firing_series() -> None:
    assert run("1 1 0", for_=10) == [(0, Phase.PENDING), (1, Phase.FIRING), (2, Phase.RESOLVED)]


def test_error_reading_holds_pending_state() -> None:
    # errors neither reset the pending timer nor advance the series to firing by themselves
    assert run("1 e e 1", for_=30) == [(0, Phase.PENDING), (3, Phase.FIRING)]


def test_error_reading_holds_firing_state() -> None:
    assert run("1 e e e 0", for_=0) == [(0, Phase.PENDING), (0, Phase.FIRING), (4, Phase.RESOLVED)]


def test_empty_vector_resolves() -> None:
    assert run("1 _", for_=0) == [(0, Phase.PENDING), (0, Phase.FIRING), (1, Phase.RESOLVED)]


def test_empty_vector_breaches_with_no_data_breach() -> None:
    assert run("_ _", for_=10, no_data="breach") == [(0, Phase.PENDING), (1, Phase.FIRING)]


ABSENT = fingerprint("pb", {})


def scan(*breaching: str, ok: tuple[str, ...] = ()) -> list[Reading]:
    return [Reading(outcome=Outcome.BREACH, labels={"deployment": d}) for d in breaching] + [
        Reading(outcome=Outcome.OK, labels={"deployment": d}) for d in ok
    ]


def test_absent_series_resolves_when_data_returns() -> None:
    detector = Detector("pb", for_=10, no_data="breach")
    assert [t.phase for t in detector.observe([], at=0)] == [Phase.PENDING]
    fired = detector.observe([], at=10)
    assert [(t.phase, dict(t.labels)) for t in fired] == [(Phase.FIRING, {})]
    assert fired[0].reading is not None and fired[0].reading.message
    resolved = detector.observe(scan(ok=("checkout",)), at=20)
    assert [(t.fingerprint, t.phase) for t in resolved] == [(ABSENT, Phase.RESOLVED)]
    assert detector.snapshot() == []


def test_absent_series_keeps_firing_for_then_resolves() -> None:
    assert run("_ 0 0", keep_firing_for=10, no_data="breach") == [
        (0, Phase.PENDING),
        (0, Phase.FIRING),
        (2, Phase.RESOLVED),
    ]


def test_pending_absent_series_is_dropped_when_data_returns() -> None:
    assert run("_ 0 _", for_=30, no_data="breach") == [(0, Phase.PENDING), (2, Phase.PENDING)]


def test_absent_series_hands_over_to_a_breaching_series() -> None:
    detector = Detector("pb", no_data="breach")
    detector.observe([], at=0)
    handover = detector.observe(scan("checkout"), at=10)
    assert [(dict(t.labels), t.phase) for t in handover] == [
        ({"deployment": "checkout"}, Phase.PENDING),
        ({"deployment": "checkout"}, Phase.FIRING),
        ({}, Phase.RESOLVED),
    ]
    # empty again: the missing series breaches on its own; no second, label-less alert
    assert detector.observe([], at=20) == []
    assert detector.phase(ABSENT) is None


def test_absent_series_does_not_start_while_a_series_is_tracked() -> None:
    detector = Detector("pb", for_=30, no_data="breach")
    detector.observe(scan("checkout"), at=0)
    for at in (10, 20, 30):
        out = detector.observe([], at=at)
    assert [(dict(t.labels), t.phase) for t in out] == [({"deployment": "checkout"}, Phase.FIRING)]
    assert detector.phase(ABSENT) is None


def test_probe_error_holds_the_absent_series() -> None:
    assert run("_ e e", no_data="breach") == [(0, Phase.PENDING), (0, Phase.FIRING)]


def test_label_less_reading_is_a_real_series_not_the_absent_one() -> None:
    detector = Detector("pb", no_data="breach")
    detector.observe([], at=0)
    out = detector.observe([Reading(outcome=Outcome.BREACH, value=5.0)], at=10)
    assert out == []  # the same series, still firing, now with data
    assert detector.snapshot()[0].absent is False
    assert [t.phase for t in detector.observe([Reading(outcome=Outcome.OK)], at=20)] == [
        Phase.RESOLVED
    ]


def test_no_data_hold_keeps_firing() -> None:
    assert run("1 n n 0", no_data="hold") == [
        (0, Phase.PENDING),
        (0, Phase.FIRING),
        (3, Phase.RESOLVED),
    ]


def test_no_data_ok_resolves() -> None:
    assert run("1 n", no_data="ok") == [(0, Phase.PENDING), (0, Phase.FIRING), (1, Phase.RESOLVED)]


def test_keep_firing_for_bridges_short_recoveries() -> None:
    transitions = run("1 0 0 1 0 0 0 0", for_=0, keep_firing_for=30)
    # first scan without a breach after the last one: scan 4 (t=40s); resolved 30s later
    assert transitions == [(0, Phase.PENDING), (0, Phase.FIRING), (7, Phase.RESOLVED)]


def test_keep_firing_for_equal_to_the_interval_keeps_one_more_scan() -> None:
    assert run("1 0 0", keep_firing_for=10) == [
        (0, Phase.PENDING),
        (0, Phase.FIRING),
        (2, Phase.RESOLVED),
    ]


def test_breach_while_kept_firing_restarts_keep_firing_for() -> None:
    # scan 1 starts the count, scan 2 breaches and clears it, scan 3 starts it again
    assert run("1 0 1 0 0 0", keep_firing_for=20) == [
        (0, Phase.PENDING),
        (0, Phase.FIRING),
        (5, Phase.RESOLVED),
    ]


def test_missing_series_is_kept_firing_like_an_ok_one() -> None:
    assert run("1 _ _ _", keep_firing_for=20) == [
        (0, Phase.PENDING),
        (0, Phase.FIRING),
        (3, Phase.RESOLVED),
    ]


def test_error_does_not_stop_the_keep_firing_clock() -> None:
    # a failed evaluation changes nothing, and time still passes: 20s after scan 1
    assert run("1 0 e 0", keep_firing_for=20) == [
        (0, Phase.PENDING),
        (0, Phase.FIRING),
        (3, Phase.RESOLVED),
    ]


def test_pending_series_missing_from_a_scan_starts_over() -> None:
    assert run("1 _ 1 1 1", for_=20) == [(0, Phase.PENDING), (2, Phase.PENDING), (4, Phase.FIRING)]


def test_flapping_within_keep_firing_for_fires_once() -> None:
    transitions = run("1 0 1 0 1 0 1 0 0 0 0", for_=0, keep_firing_for=25)
    assert [p for _, p in transitions].count(Phase.FIRING) == 1


def test_flapping_faster_than_for_never_fires() -> None:
    assert Phase.FIRING not in [p for _, p in run("1 0 " * 10, for_=20)]


def test_each_series_has_its_own_state() -> None:
    detector = Detector("pb", for_=0)
    a, b = {"deployment": "a"}, {"deployment": "b"}
    first = detector.observe(
        [Reading(outcome=Outcome.BREACH, labels=a), Reading(outcome=Outcome.OK, labels=b)], at=0
    )
    assert {(dict(t.labels)["deployment"], t.phase) for t in first} == {
        ("a", Phase.PENDING),
        ("a", Phase.FIRING),
    }
    second = detector.observe([Reading(outcome=Outcome.BREACH, labels=b)], at=10)
    assert {(dict(t.labels)["deployment"], t.phase) for t in second} == {
        ("a", Phase.RESOLVED),
        ("b", Phase.PENDING),
        ("b", Phase.FIRING),
    }


def test_labelled_error_holds_only_its_series() -> None:
    detector = Detector("pb", for_=0)
    a, b = {"deployment": "a"}, {"deployment": "b"}
    detector.observe(
        [Reading(outcome=Outcome.BREACH, labels=a), Reading(outcome=Outcome.BREACH, labels=b)], at=0
    )
    out = detector.observe(
        [Reading(outcome=Outcome.ERROR, labels=a), Reading(outcome=Outcome.OK, labels=b)], at=10
    )
    assert [(dict(t.labels)["deployment"], t.phase) for t in out] == [("b", Phase.RESOLVED)]
    assert detector.phase(fingerprint("pb", a)) is Phase.FIRING


def test_restored_firing_series_resolves_on_ok() -> None:
    detector = Detector("pb", for_=60)
    fp = fingerprint("pb", LABELS)
    detector.restore_firing(fp, LABELS, since=0)
    out = detector.observe([Reading(outcome=Outcome.OK, labels=LABELS)], at=5)
    assert [t.phase for t in out] == [Phase.RESOLVED]


def test_fingerprint_depends_on_playbook_and_labels_not_order() -> None:
    assert fingerprint("pb", {"a": "1", "b": "2"}) == fingerprint("pb", {"b": "2", "a": "1"})
    assert fingerprint("pb", {"a": "1"}) != fingerprint("other", {"a": "1"})
    assert fingerprint("pb", {"a": "1"}) != fingerprint("pb", {"a": "2"})


# --- snapshot and restore (a daemon restart) ------------------------------------------------

FP = fingerprint("pb", LABELS)
BREACH = [Reading(outcome=Outcome.BREACH, labels=LABELS)]
OK = [Reading(outcome=Outcome.OK, labels=LABELS)]


def pending(active_since: float, evaluated_at: float) -> SeriesState:
    return SeriesState(
        fingerprint=FP,
        labels=LABELS,
        phase=Phase.PENDING,
        active_since=active_since,
        evaluated_at=evaluated_at,
    )


def first_firing(detector: Detector, start: float, step: float = 10) -> float:
    """The time of the first scan that fires the series, breaching every `step` from `start`."""
    at = start
    while Phase.FIRING not in [t.phase for t in detector.observe(BREACH, at=at)]:
        at += step
    return at


def test_snapshot_holds_pending_firing_and_keep_firing_state() -> None:
    detector = Detector("pb", for_=10, keep_firing_for=30)
    a, b = {"deployment": "a"}, {"deployment": "b"}
    detector.observe([Reading(outcome=Outcome.BREACH, labels=a)], at=0)
    detector.observe(
        [Reading(outcome=Outcome.BREACH, labels=a), Reading(outcome=Outcome.BREACH, labels=b)],
        at=10,
    )
    detector.observe([Reading(outcome=Outcome.BREACH, labels=b)], at=20)
    assert detector.snapshot() == [
        SeriesState(
            fingerprint=fingerprint("pb", a),
            labels=a,
            phase=Phase.FIRING,
            active_since=0,
            evaluated_at=20,
            keep_firing_since=20,
        ),
        SeriesState(
            fingerprint=fingerprint("pb", b),
            labels=b,
            phase=Phase.FIRING,
            active_since=10,
            evaluated_at=20,
        ),
    ]


def test_restored_firing_series_keeps_its_keep_firing_since() -> None:
    before = Detector("pb", keep_firing_for=30)
    before.observe(BREACH, at=0)
    before.observe(OK, at=10)  # kept firing since t=10
    after = Detector("pb", keep_firing_for=30)
    after.restore(before.snapshot(), now=25)
    assert after.observe(OK, at=30) == []
    assert [t.phase for t in after.observe(OK, at=40)] == [Phase.RESOLVED]


def test_restored_firing_series_fires_no_new_transition_while_breaching() -> None:
    before = Detector("pb", for_=60)
    for at in range(0, 70, 10):
        before.observe(BREACH, at=at)
    after = Detector("pb", for_=60)
    after.restore(before.snapshot(), now=3600 * 5)  # firing survives any downtime
    assert after.phase(FP) is Phase.FIRING
    assert after.observe(BREACH, at=3600 * 5) == []


def test_restored_pending_series_does_not_count_the_downtime() -> None:
    # for 20m; pending 5m when the daemon stopped, back 700s later: 15m still to go
    detector = Detector("pb", for_=1200)
    detector.restore([pending(active_since=0, evaluated_at=300)], now=1000)
    assert detector.phase(FP) is Phase.PENDING
    assert detector.snapshot()[0].active_since == 700
    assert first_firing(detector, start=1000) == 1900


def test_restored_pending_series_waits_the_grace_period_at_least() -> None:
    # 200s were left, less than the 600s grace: it fires 600s after the restart
    detector = Detector("pb", for_=1200)
    detector.restore([pending(active_since=0, evaluated_at=1000)], now=1100)
    assert first_firing(detector, start=1100) == 1700


def test_restored_pending_series_past_its_for_fires_at_the_next_breach() -> None:
    # `for` was shortened while the daemon was down
    detector = Detector("pb", for_=1200)
    detector.restore([pending(active_since=0, evaluated_at=1500)], now=1600)
    assert first_firing(detector, start=1600) == 1600


def test_pending_series_with_for_below_grace_starts_over() -> None:
    detector = Detector("pb", for_=300)
    detector.restore([pending(active_since=0, evaluated_at=200)], now=260)
    assert detector.phase(FP) is None
    assert first_firing(detector, start=260) == 560
    restored = Detector("pb", for_=300)
    restored.restore([pending(active_since=0, evaluated_at=200)], now=260, grace=0)
    assert first_firing(restored, start=260) == 360  # no grace: the 60s of downtime is added


def test_pending_series_older_than_the_outage_tolerance_is_not_restored() -> None:
    detector = Detector("pb", for_=1200)
    detector.restore([pending(active_since=0, evaluated_at=300)], now=300 + 3601)
    assert detector.snapshot() == []


def test_restored_absent_series_resolves_when_data_returns() -> None:
    before = Detector("pb", no_data="breach")
    before.observe([], at=0)
    after = Detector("pb", no_data="breach")
    after.restore(before.snapshot(), now=60)
    assert [(t.fingerprint, t.phase) for t in after.observe(OK, at=60)] == [
        (ABSENT, Phase.RESOLVED)
    ]


def test_alert_state_survives_reopening_the_log(store: IncidentStore) -> None:
    detector = Detector("pb", for_=1200, keep_firing_for=60)
    a, b = {"deployment": "a"}, {"deployment": "b"}
    detector.observe([Reading(outcome=Outcome.BREACH, labels=a)], at=0)
    detector.observe(
        [Reading(outcome=Outcome.BREACH, labels=a), Reading(outcome=Outcome.BREACH, labels=b)],
        at=1200,
    )  # a fires, b is pending
    detector.observe([], at=1210)  # a: kept firing since 1210; b: dropped
    detector.observe([Reading(outcome=Outcome.BREACH, labels=b)], at=1220)
    states = detector.snapshot()
    assert [(s.phase, s.keep_firing_since, s.active_since) for s in states] == [
        (Phase.FIRING, 1210, 0),
        (Phase.PENDING, None, 1220),
    ]
    store.save_alert_state("pb", states, at=1220)
    store.close()
    reopened = IncidentStore(store.path)
    try:
        assert reopened.alert_state("pb") == states
        assert reopened.alert_state("other") == []
    finally:
        reopened.close()


def test_save_alert_state_replaces_only_that_playbooks_rows(store: IncidentStore) -> None:
    mine = pending(active_since=0, evaluated_at=10)
    theirs = replace(mine, fingerprint=fingerprint("other", LABELS))
    store.save_alert_state("pb", [mine], at=10)
    store.save_alert_state("other", [theirs], at=10)
    firing = replace(mine, phase=Phase.FIRING, keep_firing_since=20.0, evaluated_at=20)
    store.save_alert_state("pb", [firing], at=20)
    assert store.alert_state("pb") == [firing]
    assert store.alert_state("other") == [theirs]
    store.save_alert_state("pb", [], at=30)
    assert store.alert_state("pb") == []
    assert store.alert_state("other") == [theirs]


def test_save_alert_state_is_one_transaction(store: IncidentStore) -> None:
    saved = pending(active_since=0, evaluated_at=10)
    store.save_alert_state("pb", [saved], at=10)
    duplicate = replace(saved, evaluated_at=20)
    try:
        store.save_alert_state("pb", [duplicate, duplicate], at=20)  # the second row fails
    except Exception as exc:  # noqa: BLE001 - the driver's integrity error
        assert "UNIQUE" in str(exc)
    else:
        raise AssertionError("a duplicate fingerprint must fail")
    assert store.alert_state("pb") == [saved]  # the delete was rolled back with it


def test_restart_through_the_log_continues_like_an_uninterrupted_detector(
    store: IncidentStore,
) -> None:
    pattern = "1 1 0 1 0 0 0 1 1 0 0 0 0"
    kwargs = {"for_": 10.0, "keep_firing_for": 20.0}
    uninterrupted = Detector("pb", **kwargs)  # type: ignore[arg-type]
    restarted = Detector("pb", **kwargs)  # type: ignore[arg-type]
    got, want = [], []
    for index, token in enumerate(pattern.split()):
        at = index * 10.0
        readings = BREACH if token == "1" else OK
        if index == 5:  # the daemon restarts between scans 4 and 5
            store.save_alert_state("pb", restarted.snapshot(), at=at - 10)
            restarted = Detector("pb", **kwargs)  # type: ignore[arg-type]
            restarted.restore(store.alert_state("pb"), now=at)
        got += [(index, t.phase) for t in restarted.observe(readings, at=at)]
        want += [(index, t.phase) for t in uninterrupted.observe(readings, at=at)]
    assert got == want
    assert (6, Phase.RESOLVED) in got
