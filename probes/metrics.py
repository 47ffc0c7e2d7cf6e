"""`metrics` probe: scrape a Prometheus-format endpoint directly and judge a value or ratio.

Useful where no Prometheus server runs. With `rate: true` (default) samples are counters and
the probe judges their increase since its previous scrape, so `numerator` / `denominator` is
an error ratio over the last interval. The first scrape has nothing to compare with and
yields `no_data`, as does an interval with no denominator traffic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from daemon.errors import PermanentError, TemporaryError
from daemon.httpclient import request
from probes.base import PROBES, Outcome, ProbeConfig, ProbeContext, ProbeKind, Reading, Threshold

Labels = tuple[tuple[str, str], ...]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_exposition(text: str) -> Iterable[tuple[str, dict[str, str], float]]:
    """Yield (name, labels, value) for every sample of a Prometheus text exposition."""
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise PermanentError(f"line {number} of the exposition is not a sample: {line[:80]!r}")
        name, _, body, raw = match.group(1), match.group(2), match.group(3), match.group(4)
        labels = {k: _unescape(v) for k, v in _LABEL.findall(body or "")}
        try:
            value = float(raw)
        except ValueError:
            raise PermanentError(f"line {number}: bad sample value {raw!r}") from None
        yield name, labels, value


@dataclass(frozen=True)
class Selector:
    """`name{label="v", other=~"re"}`: a metric name and label matchers, as in PromQL."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]

    @classmethod
    def parse(cls, text: str) -> Selector:
        match = re.fullmatch(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*", text)
        if not match:
            raise ValueError(f'not a selector: {text!r} (expected name{{label="value"}})')
        body = match.group(2) or ""
        matchers = tuple((k, op, _unescape(v)) for k, op, v in _MATCHER.findall(body))
        if _MATCHER.sub("", body).strip():
            raise ValueError(f"cannot parse label matchers in {text!r}")
        for _, op, value in matchers:
            if op in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ValueError(f"bad regular expression {value!r}: {exc}") from None
        return cls(match.group(1), matchers)

    def matches(self, name: str, labels: dict[str, str]) -> bool:
        if name != self.name:
            return False
        for key, op, value in self.matchers:
            actual = labels.get(key, "")
            ok = {
                "=": actual == value,
                "!=": actual != value,
                "=~": re.fullmatch(value, actual) is not None,
                "!~": re.fullmatch(value, actual) is None,
            }[op]
            if not ok:
                return False
        return True


class MetricsProbeConfig(ProbeConfig, Threshold):
    kind: Literal["metrics"] = "metrics"
    url: str = Field(pattern=r"^https?://", description="The /metrics endpoint to scrape")
    numerator: str = Field(
        description='Selector of the samples to sum, e.g. `x_total{code=~"5.."}`'
    )
    denominator: str | None = Field(None, description="Selector to divide by (makes a ratio)")
    rate: bool = Field(True, description="Judge the increase since the previous scrape")
    by: list[str] = Field(default_factory=list, description="Labels to group by (one series each)")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("numerator", "denominator")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is not None:
            Selector.parse(value)
        return value


Series = tuple[str, Labels]  # metric name and all its labels


class MetricsProbe:
    def __init__(self, config: MetricsProbeConfig, context: ProbeContext) -> None:
        self.config = config
        self.clock = context.clock
        self.numerator = Selector.parse(config.numerator)
        self.denominator = Selector.parse(config.denominator) if config.denominator else None
        self._previous: tuple[float, dict[Series, float]] | None = None

    def _samples(self, text: str) -> dict[Series, tuple[float, bool, bool, Labels]]:
        """Matching samples: value, in numerator, in denominator, group key."""
        found = {}
        for name, labels, value in parse_exposition(text):
            in_num = self.numerator.matches(name, labels)
            in_den = self.denominator is not None and self.denominator.matches(name, labels)
            if in_num or in_den:
                key = tuple((k, labels.get(k, "")) for k in self.config.by)
                found[(name, tuple(sorted(labels.items())))] = (value, in_num, in_den, key)
        return found

    async def check(self) -> list[Reading]:
        cfg = self.config
        resp = await request("GET", cfg.url, headers=cfg.headers, timeout=cfg.timeout)
        if resp.status >= 500 or resp.status == 429:
            raise TemporaryError(f"scrape of {cfg.url} answered HTTP {resp.status}")
        if resp.status != 200:
            raise PermanentError(f"scrape of {cfg.url} answered HTTP {resp.status}")
        now = self.clock.now()
        samples = self._samples(resp.text())
        previous, self._previous = self._previous, (now, {s: v[0] for s, v in samples.items()})
        # per group: numerator, denominator, and whether any series had a previous sample
        groups: dict[Labels, list[float]] = {}
        for series, (value, in_num, in_den, key) in samples.items():
            group = groups.setdefault(key, [0.0, 0.0, 0.0])
            if cfg.rate:
                if previous is None or series not in previous[1]:
                    continue  # a new series has no increase yet (as rate() needs two samples)
                before = previous[1][series]
                value = value - before if value >= before else value  # per-series counter reset
                group[2] = 1.0
            group[0] += value if in_num else 0.0
            group[1] += value if in_den else 0.0
        readings = []
        for key, (num, den, has_previous) in sorted(groups.items()):
            labels = dict(key)
            if cfg.rate:
                if not has_previous:
                    readings.append(self._no_data(labels, "first scrape: a rate needs two"))
                    continue
                if self.denominator is None:
                    elapsed = now - previous[0] if previous else 0.0
                    den = elapsed if elapsed > 0 else math.nan
            value = self._value(num, den)
            if math.isnan(value):
                readings.append(self._no_data(labels, "no traffic in the interval"))
                continue
            readings.append(
                Reading(
                    outcome=cfg.judge(value),
                    labels=labels,
                    value=value,
                    message=f"value {value:.4g} (breach when {cfg.describe()})",
                    evidence={"numerator": num, "denominator": den},
                )
            )
        return readings  # no matching series: empty, which resolves (unless no_data: breach)

    def _value(self, num: float, den: float) -> float:
        if self.denominator is None and not self.config.rate:
            return num
        if den == 0 or math.isnan(den):
            return math.nan
        return num / den

    @staticmethod
    def _no_data(labels: dict[str, str], why: str) -> Reading:
        return Reading(outcome=Outcome.NO_DATA, labels=labels, message=why)


PROBES.register("metrics", ProbeKind(MetricsProbeConfig, MetricsProbe))
