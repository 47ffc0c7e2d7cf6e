"""`canary` probe: canary-versus-baseline analysis over a window, per metric.

Each metric's canary and baseline queries are evaluated with `query_range` over `window` at
`step`. At every step both have a value, the metric is checked against its limits, on the
ratio canary/baseline or the difference canary−baseline (Flagger's thresholdRange); a step
where any metric is outside its limits is one failed check. Optionally a Mann–Whitney U test
compares the window's canary and baseline samples (Kayenta style), with a direction and a
minimum effect size (relative change of the medians).

Verdict: `fail` when the failed checks over the whole analysis exceed `failure_limit`, or a
Mann–Whitney test is significant in its direction with at least `min_effect`; `inconclusive`
with too few samples or no canary traffic — a breach that escalates and never acts on its own
(its reading carries the label `verdict: inconclusive`, so it is a separate incident from a
later `fail`); `pass` otherwise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from daemon.durations import Duration
from daemon.errors import PermanentError
from probes.base import PROBES, Outcome, ProbeConfig, ProbeContext, ProbeKind, Reading
from probes.prometheus import FromPrometheus, PrometheusProbeBase
from probes.prometheus_source import RangeSeries


class MannWhitney(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: Literal["increase", "decrease", "either"] = Field(
        "increase", description="Which change of the canary is bad"
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level")
    min_effect: float = Field(
        0.0, ge=0, description="Minimum relative change of the medians, e.g. 0.1 for 10%"
    )


class CanaryMetric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    canary: str = Field(min_length=1, description="PromQL for the canary (one series)")
    baseline: str = Field(min_length=1, description="PromQL for the baseline (one series)")
    compare: Literal["ratio", "difference"] = Field(
        "ratio", description="Check canary/baseline or canary-baseline against min/max"
    )
    min: float | None = Field(None, description="Lowest acceptable ratio/difference per step")
    max: float | None = Field(None, description="Highest acceptable ratio/difference per step")
    mann_whitney: MannWhitney | None = None

    @model_validator(mode="after")
    def _some_check(self) -> CanaryMetric:
        if self.min is None and self.max is None and self.mann_whitney is None:
            raise ValueError("set `min`, `max` or `mann_whitney`")
        return self


class CanaryProbeConfig(ProbeConfig, FromPrometheus):
    kind: Literal["canary"] = "canary"
    window: Duration = Field(600.0, description="Analysis window, ending now")
    step: Duration = Field(60.0, description="One check per step")
    min_samples: int = Field(5, ge=2, description="Fewer steps with data: inconclusive")
    failure_limit: int = Field(0, ge=0, description="Failed checks tolerated over the analysis")
    traffic: str | None = Field(
        None, description="PromQL of canary traffic; none over the window: inconclusive"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels of the reading, e.g. namespace, deployment"
    )
    metrics: list[CanaryMetric] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CanaryProbeConfig:
        names = [m.name for m in self.metrics]
        if len(names) != len(set(names)):
            raise ValueError("metric names must be unique")
        if self.step > self.window:
            raise ValueError("`step` cannot be longer than `window`")
        return self


# --- statistics ---------------------------------------------------------------------------


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) and the sizes of tie groups."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@dataclass(frozen=True)
class MannWhitneyResult:
    u: float
    p_greater: float  # P-value for "x tends to be larger than y"
    p_less: float

    def p(self, direction: str) -> float:
        if direction == "increase":
            return self.p_greater
        if direction == "decrease":
            return self.p_less
        return min(1.0, 2 * min(self.p_greater, self.p_less))


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> MannWhitneyResult:
    """Mann–Whitney U of x against y: normal approximation with tie and continuity
    corrections (as scipy's `method="asymptotic"`)."""
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need values")
    ranks, ties = _ranks([*x, *y])
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    tie_term = sum(t**3 - t for t in ties) / (n * (n - 1)) if n > 1 else 0.0
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term))
    if sigma == 0:
        return MannWhitneyResult(u1, 1.0, 1.0)
    mu = n1 * n2 / 2
    p_greater = 1 - _phi((u1 - mu - 0.5) / sigma)
    p_less = _phi((u1 - mu + 0.5) / sigma)
    return MannWhitneyResult(u1, min(1.0, p_greater), min(1.0, p_less))


def relative_change(canary: Sequence[float], baseline: Sequence[float]) -> float:
    """Relative change of the canary's median over the baseline's (0.1 = 10% higher)."""
    c, b = statistics.median(canary), statistics.median(baseline)
    if b == 0:
        return 0.0 if c == 0 else math.copysign(math.inf, c)
    return (c - b) / abs(b)


def step_score(metric: CanaryMetric, canary: float, baseline: float) -> float:
    if metric.compare == "difference":
        return canary - baseline
    if baseline == 0:
        return 1.0 if canary == 0 else math.inf
    return canary / baseline


# --- the analysis -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Verdict:
    verdict: Literal["pass", "fail", "inconclusive"]
    reason: str
    failed_checks: int
    samples: int
    metrics: list[dict[str, Any]]


def _points(series: list[RangeSeries], query: str) -> dict[float, float]:
    if len(series) > 1:
        raise PermanentError(f"query must return one series (aggregate it with sum()): {query!r}")
    if not series:
        return {}
    return {t: v for t, v in series[0].points if not math.isnan(v)}


def analyse(
    config: CanaryProbeConfig,
    data: dict[str, tuple[dict[float, float], dict[float, float]]],
    traffic: float | None,
) -> Verdict:
    """Judge the window. `data` maps metric name → (canary points, baseline points)."""
    details: list[dict[str, Any]] = []
    failed_steps: set[float] = set()
    mw_failures = []
    samples = min((len(set(c) & set(b)) for c, b in data.values()), default=0)
    if traffic is not None and traffic <= 0:
        return Verdict(
            verdict="inconclusive",
            reason="no canary traffic in the window",
            failed_checks=0,
            samples=samples,
            metrics=[],
        )
    for metric in config.metrics:
        canary, baseline = data[metric.name]
        common = sorted(set(canary) & set(baseline))
        detail: dict[str, Any] = {"metric": metric.name, "samples": len(common)}
        if not canary:
            return Verdict(
                verdict="inconclusive",
                reason=f"no canary data for {metric.name}",
                failed_checks=0,
                samples=0,
                metrics=[detail],
            )
        failed = [
            t for t in common if not _within(metric, step_score(metric, canary[t], baseline[t]))
        ]
        failed_steps.update(failed)
        detail["failed_checks"] = len(failed)
        if common:
            c_values, b_values = [canary[t] for t in common], [baseline[t] for t in common]
            detail["canary_median"] = statistics.median(c_values)
            detail["baseline_median"] = statistics.median(b_values)
            if metric.mann_whitney is not None and len(common) >= config.min_samples:
                mw = metric.mann_whitney
                p = mann_whitney_u(c_values, b_values).p(mw.direction)
                effect = relative_change(c_values, b_values)
                bad_direction = {
                    "increase": effect > 0,
                    "decrease": effect < 0,
                    "either": effect != 0,
                }[mw.direction]
                significant = p < mw.alpha and bad_direction and abs(effect) >= mw.min_effect
                detail |= {"p_value": p, "effect": effect, "significant": significant}
                if significant:
                    mw_failures.append(metric.name)
        details.append(detail)
    failed_total = len(failed_steps)
    verdict: Literal["pass", "fail", "inconclusive"]
    if samples < config.min_samples:
        verdict = "inconclusive"
        reason = f"{samples} samples, fewer than min_samples {config.min_samples}"
    elif failed_total > config.failure_limit or mw_failures:
        verdict = "fail"
        reasons = []
        if failed_total > config.failure_limit:
            reasons.append(f"{failed_total} failed checks > failure_limit {config.failure_limit}")
        if mw_failures:
            reasons.append("significant change in " + ", ".join(mw_failures))
        reason = "; ".join(reasons)
    else:
        verdict, reason = "pass", f"{failed_total} failed checks within the limit"
    return Verdict(
        verdict=verdict, reason=reason, failed_checks=failed_total, samples=samples, metrics=details
    )


def _within(metric: CanaryMetric, score: float) -> bool:
    if math.isnan(score):
        return True
    return not (
        (metric.min is not None and score < metric.min)
        or (metric.max is not None and score > metric.max)
    )


class CanaryProbe(PrometheusProbeBase):
    def __init__(self, config: CanaryProbeConfig, context: ProbeContext) -> None:
        super().__init__(config, context)
        self.config = config

    async def check(self) -> list[Reading]:
        cfg = self.config
        end = self.clock.now()
        start = end - cfg.window
        data = {}
        for metric in cfg.metrics:
            canary = await self.client.range(metric.canary, start, end, cfg.step)
            baseline = await self.client.range(metric.baseline, start, end, cfg.step)
            data[metric.name] = (
                _points(canary, metric.canary),
                _points(baseline, metric.baseline),
            )
        traffic = None
        if cfg.traffic is not None:
            points = _points(
                await self.client.range(cfg.traffic, start, end, cfg.step), cfg.traffic
            )
            traffic = sum(points.values())
        verdict = analyse(cfg, data, traffic)
        labels = dict(cfg.labels)
        if verdict.verdict == "inconclusive":
            labels["verdict"] = "inconclusive"
        return [
            Reading(
                outcome=Outcome.OK if verdict.verdict == "pass" else Outcome.BREACH,
                labels=labels,
                value=float(verdict.failed_checks),
                message=f"canary {verdict.verdict}: {verdict.reason}",
                actionable=verdict.verdict != "inconclusive",
                evidence={
                    "verdict": verdict.verdict,
                    "reason": verdict.reason,
                    "failed_checks": verdict.failed_checks,
                    "failure_limit": cfg.failure_limit,
                    "samples": verdict.samples,
                    "metrics": verdict.metrics,
                },
            )
        ]


PROBES.register("canary", ProbeKind(CanaryProbeConfig, CanaryProbe))
