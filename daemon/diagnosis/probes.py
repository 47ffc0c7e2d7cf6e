"""Causes found in what the canary, http and freshness probes measured."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from daemon.diagnosis.causes import Cause


def canary(evidence: Mapping[str, Any]) -> Iterator[Cause]:
    """`canary_inconclusive`; `canary_weak`: failed only on per-step limits while every
    statistical test run says the difference is not significant."""
    verdict = evidence.get("verdict")
    if verdict == "inconclusive":
        yield Cause.of("canary_inconclusive", "canary", evidence.get("reason", "inconclusive"))
    if verdict != "fail":
        return
    metrics = [m for m in evidence.get("metrics") or [] if isinstance(m, Mapping)]
    tested = [m for m in metrics if "significant" in m]
    if tested and not any(m.get("significant") for m in tested):
        tests = "; ".join(f"{m.get('metric')}: p={m.get('p_value')}" for m in tested)
        yield Cause.of(
            "canary_weak",
            "canary",
            f"{evidence.get('reason', 'failed')}, but no significant difference ({tests})",
        )


UNREACHABLE: Mapping[str, str] = {"tls": "config_error", "dns": "dependency_down"}
"""An unreachable target's reason → cause, when its error text names no more precise one
(an expired certificate is `cert_expired` through the patterns)."""


def http(evidence: Mapping[str, Any], text_causes: set[str]) -> Iterator[Cause]:
    unreachable = evidence.get("unreachable")
    if not isinstance(unreachable, Mapping) or text_causes:
        return
    cause = UNREACHABLE.get(str(unreachable.get("reason")))
    if cause is not None:
        yield Cause.of(
            cause,
            "probe",
            f"unreachable ({unreachable.get('reason')}): {unreachable.get('detail')}",
        )


def freshness(evidence: Mapping[str, Any]) -> Iterator[Cause]:
    """`upstream_stale`: the upstream's newest row is no newer than the newest loaded row
    (compared by timestamp when both are known, else by age)."""
    if "upstream_age_seconds" not in evidence and "upstream_loaded_at" not in evidence:
        return
    theirs, mine = evidence.get("upstream_loaded_at"), evidence.get("max_loaded_at")
    newer: bool | None = None
    if isinstance(theirs, int | float) and isinstance(mine, int | float):
        newer = theirs > mine
    else:
        their_age, my_age = evidence.get("upstream_age_seconds"), evidence.get("age_seconds")
        if isinstance(their_age, int | float) and isinstance(my_age, int | float):
            newer = their_age < my_age
        elif their_age is None and theirs is None:
            newer = False  # the upstream has no rows at all
    if newer is False:
        age = evidence.get("upstream_age_seconds")
        shown = "no rows" if age is None else f"its newest row is {age:.0f}s old"
        yield Cause.of(
            "upstream_stale",
            "probe upstream",
            f"the upstream has nothing newer than what was loaded ({shown}; loaded data "
            f"{evidence.get('age_seconds', '?')}s old)",
        )
