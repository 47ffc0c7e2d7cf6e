"""Detector semantics, driven by a compact series notation like promtool's:

`1` breach, `0` ok, `_` series missing from the scan, `e` probe error, `n` no data;
`1x3` is three breaches in a row. One token per scan, `step` seconds apart."""

from __future__ import annotations

import re

from daemon.detector import Detector, Phase, fingerprint
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
    # last breach at scan 3 (t=30s); resolved once 30s have passed without one: scan 6
    assert transitions == [(0, Phase.PENDING), (0, Phase.FIRING), (6, Phase.RESOLVED)]


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
