"""The detector against Prometheus's own rule engine: `promtool test rules` (Debian's 2.42).

Random cases (seeded) of breach patterns, one alerting rule each, all in one rules file and
one promtool test file, checked in a single promtool run. For every case and every evaluation
the expected alerts come from our Detector fed the same series, one scan per evaluation:

- `1` breach (value 1), `0` ok (value 0), `n` NaN (a `no_data` reading), `_` the series is
  missing from the scan. In the promtool input a missing sample is a staleness marker
  (`stale`) followed by omitted samples (`_`), so the series really is absent from the vector
  and not seen through the 5m lookback.
- threshold cases: `m{case="i"} > 0` with random `for` and `keep_firing_for` (multiples of
  the 1m interval, including keep_firing_for == interval), against `no_data: ok`;
- absent cases: `absent(a{case=~"i"})` (a label-less alert, as the regex matcher drops the
  label) on `0`/`_` patterns, against `no_data: breach`, whose empty scans breach a
  label-less series.

Both pending and firing are compared through the ALERTS series (`promql_expr_test`), firing
also through `alert_rule_test`. A mismatch fails the test and prints the case.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from daemon.detector import Detector, Phase, fingerprint
from probes.base import Outcome, Reading

PROMTOOL = shutil.which("promtool")
SEED = 20240607
CASES = 240
STEP = 60  # seconds: the rule group's evaluation interval and the input series' interval
OUTCOMES = {"1": (Outcome.BREACH, 1.0), "0": (Outcome.OK, 0.0), "n": (Outcome.NO_DATA, None)}
VALUES = {"1": "1", "0": "0", "n": "NaN"}


@dataclass(frozen=True, kw_only=True)
class Case:
    index: int
    kind: Literal["threshold", "absent"]
    for_steps: int
    keep_steps: int
    series: tuple[str, ...]  # one token per step for each series

    @property
    def alertname(self) -> str:
        return f"case_{self.index}"

    @property
    def steps(self) -> int:
        return len(self.series[0])

    def labels(self, series: int) -> dict[str, str]:
        return {"case": str(self.index), "s": str(series)}

    def describe(self) -> str:
        rule = f'm{{case="{self.index}"}} > 0, no_data: ok'
        if self.kind == "absent":
            rule = f'absent(a{{case=~"{self.index}"}}), no_data: breach'
        lines = [
            f"{self.alertname}: {rule}, for {self.for_steps * STEP}s, "
            f"keep_firing_for {self.keep_steps * STEP}s, one scan every {STEP}s"
        ]
        lines += [f"  series s={n}: {' '.join(tokens)}" for n, tokens in enumerate(self.series)]
        return "\n".join(lines)


def pattern(rng: random.Random, steps: int, tokens: str, weights: list[int]) -> str:
    """Runs of tokens (1-5 scans each), so patterns both hold and flap."""
    out = ""
    while len(out) < steps:
        out += rng.choices(tokens, weights)[0] * rng.randint(1, 5)
    return out[:steps]


def generate(seed: int = SEED, count: int = CASES) -> list[Case]:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    cases = []
    for index in range(count):
        steps = rng.randint(8, 30)
        absent = index % 5 == 4
        series: tuple[str, ...]
        if absent:
            series = (pattern(rng, steps, "0_", [1, 1]),)
        else:
            count_series = rng.choice([1, 1, 2, 3])
            series = tuple(pattern(rng, steps, "10_n", [5, 3, 3, 1]) for _ in range(count_series))
        cases.append(
            Case(
                index=index,
                kind="absent" if absent else "threshold",
                for_steps=rng.choice([0, 0, 1, 2, 3, 5]),
                keep_steps=rng.choice([0, 0, 1, 1, 2, 3, 5]),
                series=series,
            )
        )
    return cases


def expected(case: Case) -> list[set[str]]:
    """Per evaluation, the ALERTS samples our detector implies (as promtool label strings)."""
    detector = Detector(
        "promtool",
        for_=case.for_steps * STEP,
        keep_firing_for=case.keep_steps * STEP,
        no_data="breach" if case.kind == "absent" else "ok",
    )
    known = [case.labels(n) for n in range(len(case.series))] + [{}]
    steps: list[set[str]] = []
    for step in range(case.steps):
        readings = []
        for n, tokens in enumerate(case.series):
            if tokens[step] != "_":
                outcome, value = OUTCOMES[tokens[step]]
                readings.append(Reading(outcome=outcome, labels=case.labels(n), value=value))
        detector.observe(readings, at=step * STEP)
        alerts = set()
        for labels in known:
            phase = detector.phase(fingerprint("promtool", labels))
            if phase is not None:
                alerts.add(alerts_series(case, labels, phase))
        steps.append(alerts)
    return steps


def alerts_series(case: Case, labels: dict[str, str], phase: Phase) -> str:
    pairs = {"alertname": case.alertname, "alertstate": phase.value, **labels}
    return "ALERTS{" + ", ".join(f'{k}="{v}"' for k, v in sorted(pairs.items())) + "}"


def input_values(tokens: str) -> str:
    """promtool's expanding notation: `vxN` is N+1 samples, `_xN` N omitted ones; a gap
    starts with a staleness marker so the series leaves the vector at once."""
    out: list[str] = []
    for run in re.finditer(r"(.)\1*", tokens):
        token, length = run.group(1), len(run.group(0))
        if token != "_":
            value = VALUES[token]
            if length == 1 or token == "n":  # the lexer reads `NaNx1` as one identifier
                out += [value] * length
            else:
                out.append(f"{value}x{length - 1}")
            continue
        if run.start() > 0:  # after a sample: mark it stale, then omit the rest
            out.append("stale")
            length -= 1
        if length:
            out.append(f"_x{length}")
    return " ".join(out)


def write_files(cases: list[Case], results: dict[int, list[set[str]]], folder: Path) -> Path:
    """One rules file and one promtool test file for all cases (JSON is YAML)."""
    rules: list[dict[str, Any]] = []
    series: list[dict[str, str]] = []
    alert_tests: list[dict[str, Any]] = []
    expr_tests: list[dict[str, Any]] = []
    for case in cases:
        metric = "a" if case.kind == "absent" else "m"
        expr = (
            f'absent(a{{case=~"{case.index}"}})'
            if case.kind == "absent"
            else f'm{{case="{case.index}"}} > 0'
        )
        rules.append(
            {
                "alert": case.alertname,
                "expr": expr,
                "for": f"{case.for_steps * STEP}s",
                "keep_firing_for": f"{case.keep_steps * STEP}s",
            }
        )
        for n, tokens in enumerate(case.series):
            labels = ", ".join(f'{k}="{v}"' for k, v in case.labels(n).items())
            series.append({"series": f"{metric}{{{labels}}}", "values": input_values(tokens)})
        for step, alerts in enumerate(results[case.index]):
            eval_time = f"{step * STEP}s"
            firing = [
                {"exp_labels": labels_of(a)} for a in sorted(alerts) if 'alertstate="firing"' in a
            ]
            alert_tests.append(
                {"eval_time": eval_time, "alertname": case.alertname, "exp_alerts": firing}
            )
            expr_tests.append(
                {
                    "expr": f'ALERTS{{alertname="{case.alertname}"}}',
                    "eval_time": eval_time,
                    "exp_samples": [{"labels": a, "value": 1} for a in sorted(alerts)],
                }
            )
    rules_file = folder / "rules.yml"
    rules_file.write_text(
        json.dumps({"groups": [{"name": "cases", "interval": f"{STEP}s", "rules": rules}]})
    )
    test_file = folder / "test.yml"
    test_file.write_text(
        json.dumps(
            {
                "rule_files": [rules_file.name],
                "evaluation_interval": f"{STEP}s",
                "tests": [
                    {
                        "interval": f"{STEP}s",
                        "input_series": series,
                        "alert_rule_test": alert_tests,
                        "promql_expr_test": expr_tests,
                    }
                ],
            }
        )
    )
    return test_file


def labels_of(alerts_series: str) -> dict[str, str]:
    """The alert's own labels (what alert_rule_test expects) from an ALERTS label string."""
    pairs = dict(re.findall(r'(\w+)="([^"]*)"', alerts_series))
    return {k: v for k, v in pairs.items() if k not in ("alertname", "alertstate")}


def promtool_mismatches(
    cases: list[Case], results: dict[int, list[set[str]]], folder: Path
) -> tuple[dict[int, list[str]], str]:
    """Run promtool once over all cases and the ALERTS expected at each step; the failing
    cases (with promtool's lines about them) and promtool's whole output."""
    assert PROMTOOL is not None
    test_file = write_files(cases, results, folder)
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", test_file.name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    output = proc.stdout + proc.stderr
    failing: dict[int, list[str]] = {}
    # promtool's failures: `alertname: case_N, time: T` (firing alerts, several lines) or
    # `expr: "ALERTS{alertname=\"case_N\"}", time: T` then its `exp:` and `got:` lines
    lines = output.splitlines()
    for n, line in enumerate(lines):
        if found := re.match(r"\s*alertname: case_(\d+),", line):
            failing.setdefault(int(found.group(1)), []).append(line + " (firing alerts differ)")
        elif found := re.match(r'\s*expr: "ALERTS\{alertname=\\"case_(\d+)\\"\}"', line):
            failing.setdefault(int(found.group(1)), []).extend(lines[n : n + 3])
    if proc.returncode != 0 and not failing:
        raise AssertionError(f"promtool failed without naming a case:\n{output[-4000:]}")
    return failing, output


def compact(alerts_series: str) -> str:
    """`s=1:pending` for an ALERTS label string; `{}:firing` for the label-less alert."""
    pairs = dict(re.findall(r'(\w+)="([^"]*)"', alerts_series))
    series = f"s={pairs['s']}" if "s" in pairs else "{}"
    return f"{series}:{pairs['alertstate']}"


def report(
    cases: list[Case], results: dict[int, list[set[str]]], failing: dict[int, list[str]]
) -> str:
    """The first failing cases: the case, what our detector said at each step, promtool's
    complaints."""
    out = [f"{len(failing)} of {len(cases)} cases differ from promtool (first 5 shown):"]
    for index in sorted(failing)[:5]:
        case = next(c for c in cases if c.index == index)
        out.append(case.describe())
        out.append("  detector, per evaluation (series: state):")
        for step, alerts in enumerate(results[index]):
            states = [compact(a) for a in sorted(alerts)]
            out.append(f"    {step * STEP // 60}m: {' '.join(states) or '-'}")
        out += ["  promtool:"] + [f"    {line.strip()}" for line in failing[index]]
    return "\n".join(out)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not on PATH (apt install prometheus)")
def test_detector_matches_promtool_on_random_series(tmp_path: Path) -> None:
    cases = generate()
    assert len(cases) >= 200
    results = {case.index: expected(case) for case in cases}
    failing, output = promtool_mismatches(cases, results, tmp_path)
    assert not failing, report(cases, results, failing)
    assert "SUCCESS" in output


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not on PATH (apt install prometheus)")
def test_promtool_run_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness itself: expecting no alert at all where series breach must fail, naming
    exactly those cases."""
    cases = [case for case in generate(count=20) if "1" in "".join(case.series)][:3]
    silent = {case.index: [set[str]() for _ in range(case.steps)] for case in cases}
    failing, _ = promtool_mismatches(cases, silent, tmp_path)
    assert sorted(failing) == [case.index for case in cases]


def test_input_values_use_promtool_expansion() -> None:
    # `1x2` is three samples, `_x2` two omitted ones; a gap after a sample starts `stale`
    assert input_values("111__0") == "1x2 stale _x1 0"
    assert input_values("__1_nn") == "_x2 1 stale NaN NaN"
