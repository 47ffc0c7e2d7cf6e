"""Canary analysis as a pure judgement over windows of samples (no server needed here; the
Prometheus round trip is in test_prometheus.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from probes.canary import CanaryProbeConfig, analyse, mann_whitney_u, relative_change


def config(**overrides: Any) -> CanaryProbeConfig:
    base: dict[str, Any] = {
        "kind": "canary",
        "window": "10m",
        "step": "1m",
        "min_samples": 5,
        "failure_limit": 1,
        "metrics": [{"name": "errors", "canary": "c", "baseline": "b", "max": 1.5}],
    }
    return CanaryProbeConfig.model_validate(base | overrides)


def series(values: list[float]) -> dict[float, float]:
    return {60.0 * i: v for i, v in enumerate(values)}


@pytest.mark.parametrize(
    ("x", "y", "two_sided", "greater", "less"),
    [  # expected p-values from scipy.stats.mannwhitneyu(x, y, method="asymptotic")
        ([1, 2, 3, 4, 5, 6, 7, 8], [3, 4, 5, 6, 7, 8, 9, 10], 0.15442325, 0.93693811, 0.07721163),
        ([1, 1, 2, 2, 3, 3, 3], [2, 2, 3, 3, 4, 4, 4], 0.08382594, 0.96869131, 0.04191297),
    ],
)
def test_mann_whitney_matches_scipy_asymptotic(
    x: list[float], y: list[float], two_sided: float, greater: float, less: float
) -> None:
    result = mann_whitney_u(x, y)
    assert result.p("either") == pytest.approx(two_sided, abs=1e-7)
    assert result.p("increase") == pytest.approx(greater, abs=1e-7)
    assert result.p("decrease") == pytest.approx(less, abs=1e-7)


def test_identical_samples_are_not_significant() -> None:
    assert mann_whitney_u([1, 1, 1], [1, 1, 1]).p("either") == 1.0


def test_relative_change_of_medians() -> None:
    assert relative_change([2, 2, 2], [1, 1, 1]) == 1.0
    assert relative_change([0, 0], [0, 0]) == 0.0


def test_healthy_canary_passes() -> None:
    data = {"errors": (series([1.0] * 10), series([1.0] * 10))}
    verdict = analyse(config(), data, traffic=None)
    assert verdict.verdict == "pass" and verdict.failed_checks == 0 and verdict.samples == 10


def test_failures_count_over_the_whole_analysis_not_only_consecutively() -> None:
    # two failed checks (ratio 2.0 > 1.5), far apart: over failure_limit 1
    canary = series([1, 2, 1, 1, 1, 1, 1, 2, 1, 1])
    verdict = analyse(config(), {"errors": (canary, series([1.0] * 10))}, traffic=None)
    assert verdict.verdict == "fail" and verdict.failed_checks == 2
    one_failure = series([1, 2, 1, 1, 1, 1, 1, 1, 1, 1])
    assert analyse(config(), {"errors": (one_failure, series([1.0] * 10))}, None).verdict == "pass"


def test_difference_compare() -> None:
    metric = {
        "name": "latency",
        "canary": "c",
        "baseline": "b",
        "compare": "difference",
        "max": 0.05,
    }
    cfg = config(metrics=[metric], failure_limit=0)
    data = {"latency": (series([0.30] * 6), series([0.20] * 6))}
    assert analyse(cfg, data, None).verdict == "fail"
    data = {"latency": (series([0.22] * 6), series([0.20] * 6))}
    assert analyse(cfg, data, None).verdict == "pass"


def test_too_few_samples_is_inconclusive() -> None:
    data = {"errors": (series([9.0] * 3), series([1.0] * 3))}
    verdict = analyse(config(), data, traffic=None)
    assert verdict.verdict == "inconclusive" and "fewer than min_samples" in verdict.reason


def test_no_canary_data_is_inconclusive() -> None:
    verdict = analyse(config(), {"errors": ({}, series([1.0] * 10))}, traffic=None)
    assert verdict.verdict == "inconclusive"


def test_no_canary_traffic_is_inconclusive() -> None:
    data = {"errors": (series([9.0] * 10), series([1.0] * 10))}
    verdict = analyse(config(traffic="sum(rate(x[1m]))"), data, traffic=0.0)
    assert verdict.verdict == "inconclusive" and "traffic" in verdict.reason


def mw_config(direction: str, min_effect: float = 0.0) -> CanaryProbeConfig:
    metric = {
        "name": "errors",
        "canary": "c",
        "baseline": "b",
        "mann_whitney": {"direction": direction, "alpha": 0.05, "min_effect": min_effect},
    }
    return config(metrics=[metric])


def test_mann_whitney_fails_a_significant_increase() -> None:
    canary = series([0.020, 0.025, 0.022, 0.021, 0.024, 0.023])
    baseline = series([0.010, 0.012, 0.011, 0.013, 0.010, 0.012])
    verdict = analyse(mw_config("increase"), {"errors": (canary, baseline)}, None)
    assert verdict.verdict == "fail" and "significant change in errors" in verdict.reason
    assert verdict.metrics[0]["p_value"] < 0.05


def test_mann_whitney_ignores_a_change_in_the_harmless_direction() -> None:
    canary = series([0.010, 0.012, 0.011, 0.013, 0.010, 0.012])
    baseline = series([0.020, 0.025, 0.022, 0.021, 0.024, 0.023])
    assert analyse(mw_config("increase"), {"errors": (canary, baseline)}, None).verdict == "pass"
    assert analyse(mw_config("either"), {"errors": (canary, baseline)}, None).verdict == "fail"


def test_mann_whitney_below_min_effect_passes() -> None:
    canary = series([1.02, 1.03, 1.02, 1.03, 1.02, 1.03])
    baseline = series([1.00, 1.01, 1.00, 1.01, 1.00, 1.01])  # significant, but only +2%
    cfg = mw_config("increase", min_effect=0.10)
    assert analyse(cfg, {"errors": (canary, baseline)}, None).verdict == "pass"


def test_config_needs_a_check_per_metric_and_unique_names() -> None:
    with pytest.raises(ValidationError, match="set `min`, `max` or `mann_whitney`"):
        config(metrics=[{"name": "m", "canary": "c", "baseline": "b"}])
    twice = {"name": "m", "canary": "c", "baseline": "b", "max": 2}
    with pytest.raises(ValidationError, match="unique"):
        config(metrics=[twice, twice])
