"""Playbook and config loading, durations and templates never crash, hang or blow memory:
whatever the input, the answer is a `file:line: field: message` ConfigError (or a
TemplateProblem at run time) in well under two seconds.

The inputs users reported live in tests/regressions/ and go through the real CLI; a fuzzer
(hypothesis, derandomized) mutates the shipped playbooks and the example config and runs the
loaders in-process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import load_settings
from daemon.durations import parse_duration
from daemon.errors import ConfigError
from daemon.playbook import load_playbooks
from daemon.templating import (
    MAX_TEMPLATES,
    Limits,
    TemplateProblem,
    check_expression,
    check_template,
    evaluate,
    render,
)
from daemon.yamlsource import LIBYAML, MAX_ALIAS_NODES, MAX_DEPTH, MAX_NODES, read_yaml

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = Path(__file__).parent / "regressions"
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yaml"))
CONFIG = ROOT / "systemd" / "opsmedic.yaml"


def problem_pattern(path: Path) -> re.Pattern[str]:
    """file:line: field: message, on one line."""
    return re.compile(rf"{re.escape(str(path))}:\d+: \S.*: .+")


def assert_clean(problems: list[str], path: Path) -> None:
    pattern = problem_pattern(path)
    assert problems
    for problem in problems:
        assert pattern.fullmatch(problem), problem


# --- the reported inputs, through the real CLI -------------------------------------------------

EXPECTED = {
    "actions-negative.yaml": "actions: Input should be a valid list",
    "alias-bomb.yaml": "aliases expand to more than 100,000 values",
    "binary-garbage.yaml": "(file): not UTF-8",
    "colon-in-path.yaml": "probe.every: invalid duration 'soon'",
    "control-character.yaml": "(file): control character U+0007",
    "deep-mapping.yaml": "nested deeper than 100 levels",
    "huge-duration-int.yaml": "probe.every: duration 1000",
    "huge-duration.yaml": "is too large: at most 100 years",
    "int-5000-digits.yaml": "cannot read this value: Exceeds the limit (4300 digits)",
    "negative-duration.yaml": "probe.for: a duration must not be negative (got '-1s')",
    "nested-brackets.yaml": "nest",  # libyaml stops at 1,000 levels, PyYAML's parser at ours
    "non-utf8.yaml": "(file): not UTF-8: byte 0xe9",
    "recursive-alias.yaml": "recursive aliases are not supported",
    "template-bomb-when.yaml": "actions[0].when: bad condition: a part that needs no data fails",
    "template-bomb-with.yaml": "actions[0].with.argv[1]: bad template: a part that needs no data",
    "two-documents.yaml": "expected a single document",
    "uses-mapping.yaml": "actions[0].uses: unknown uses",
    "utf16-bom.yaml": "(file): the file is UTF-16",
    "utf8-bom.yaml": None,  # loads
    "zero-every.yaml": "probe.every: every must be more than zero",
}


def test_every_regression_input_has_an_expectation() -> None:
    assert {p.name for p in REGRESSIONS.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validate_answers_a_regression_input_cleanly(name: str, tmp_path: Path) -> None:
    path = REGRESSIONS / name
    if name == "colon-in-path.yaml":  # kept without a colon in the repository (Windows)
        path = tmp_path / "team:payments" / "checkout:errors.yaml"
        path.parent.mkdir()
        shutil.copy(REGRESSIONS / name, path)
    env = {k: v for k, v in os.environ.items() if k != "OPSMEDIC_CONFIG"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no opsmedic.yaml here
        env=env,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert "Traceback" not in result.stderr, result.stderr
    assert elapsed < 5, f"{name}: validate took {elapsed:.1f}s"
    expected = EXPECTED[name]
    if expected is None:
        assert result.returncode == 0, result.stderr
        assert "1 playbook(s) valid" in result.stdout
        return
    assert result.returncode == 1, result.stdout + result.stderr
    assert_clean(result.stderr.splitlines(), path)
    assert expected in result.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pythons_yaml_parser_refuses_the_same_inputs(name: str) -> None:
    """The fallback when PyYAML has no libyaml gives the same verdicts."""
    outcomes = []
    for pure in (False, True):
        try:
            read_yaml(REGRESSIONS / name, pure=pure)
            outcomes.append(None)
        except ConfigError as exc:
            assert_clean(exc.problems, REGRESSIONS / name)
            outcomes.append(len(exc.problems))
    assert outcomes[0] == outcomes[1]


def test_utf8_bom_loads_like_the_same_file_without_it(tmp_path: Path) -> None:
    with_bom = REGRESSIONS / "utf8-bom.yaml"
    plain = tmp_path / "plain.yaml"
    plain.write_bytes(with_bom.read_bytes().removeprefix(b"\xef\xbb\xbf"))
    assert read_yaml(with_bom).data == read_yaml(plain).data
    [loaded] = load_playbooks([with_bom])
    assert loaded.playbook.name == "utf8-bom"


# --- size limits: refused early, fast, on the right line ---------------------------------------

HEAD = """\
name: big
probe: {kind: http, url: "http://127.0.0.1:8080/healthz", every: 15s}
"""


def timed(call: Callable[[], Any]) -> tuple[float, ConfigError | None]:
    started = time.perf_counter()
    try:
        call()
    except ConfigError as exc:
        return time.perf_counter() - started, exc
    return time.perf_counter() - started, None


def test_alias_bomb_is_refused_in_milliseconds() -> None:
    seconds, error = timed(lambda: load_playbooks([REGRESSIONS / "alias-bomb.yaml"]))
    assert error is not None and seconds < 0.5
    [problem] = error.problems
    assert problem.endswith(
        f"alias-bomb.yaml:6: f[0]: aliases expand to more than {MAX_ALIAS_NODES:,} values "
        "(a 'billion laughs' document?); write the values out or use fewer aliases"
    )


def test_aliases_within_the_limit_still_load(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text(
        HEAD + "actions:\n"
        "  - {id: one, uses: command, with: &argv {argv: [echo, hello]}}\n"
        "  - {id: two, uses: command, with: *argv}\n"
    )
    [loaded] = load_playbooks([path])
    assert [s.with_ for s in loaded.playbook.steps] == [{"argv": ["echo", "hello"]}] * 2


@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, MAX_DEPTH])
@pytest.mark.parametrize("pure", [False, True])
def test_nesting_up_to_the_limit_reads(levels: int, pure: bool, tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("x: " + "[" * (levels - 1) + "]" * (levels - 1) + "\n")
    assert read_yaml(path, pure=pure).data["x"] is not None


@pytest.mark.parametrize("pure", [False, True])
def test_nesting_past_the_limit_through_an_alias_is_refused(pure: bool, tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    deep = "[" * 60 + "]" * 60
    path.write_text(f"a: &a {deep}\nb: {'[' * 60}*a{']' * 60}\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path, pure=pure)
    assert info.value.problems == [
        f"{path}:2: b[0][0][0][0][0][0][0][0][0][0][0]…: alias *a nests the document deeper "
        f"than {MAX_DEPTH} levels"
    ]


def big_files() -> dict[str, str]:
    action = (
        "  - id: a{i}\n    uses: command\n    with:\n      argv: [echo, '{{{{ labels.x }}}}']\n"
    )
    return {
        "200k-item flow list": HEAD + "causes: {big: [" + ",".join(["p"] * 200_000) + "]}\n",
        "200k-item block list": HEAD + "causes:\n  big:\n" + "    - p\n" * 200_000,
        "1 MB flat list": HEAD + "description: [" + ",".join(["0"] * 500_000) + "]\n",
        "1 MB of actions": HEAD + "actions:\n" + "".join(action.format(i=i) for i in range(12_000)),
        "1 MB of distinct templates": HEAD
        + "actions:\n  - id: a\n    uses: command\n    with:\n      argv:\n"
        + "".join(f"        - '{{{{ labels.x{i} }}}}'\n" for i in range(32_000)),
        "1 MB string": HEAD + "description: '" + "x" * 1_000_000 + "'\n",
    }


@pytest.mark.parametrize("shape", list(big_files()))
def test_big_files_are_answered_in_under_two_seconds(shape: str, tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(big_files()[shape])
    seconds, error = timed(lambda: load_playbooks([path]))
    print(f"{shape}: {path.stat().st_size:,} bytes in {seconds:.2f}s")  # noqa: T201 - figures
    assert seconds < 2
    if shape == "1 MB string":
        assert error is None
        return
    assert error is not None
    assert_clean(error.problems, path)
    assert any(
        w in error.problems[0] for w in (f"more than {MAX_NODES:,} values", "MiB", "templates")
    )


def test_a_large_but_sane_playbook_loads_in_under_two_seconds(tmp_path: Path) -> None:
    path = tmp_path / "large.yaml"
    steps = "".join(
        f"  - {{id: a{i}, uses: command, with: {{argv: [echo, '{{{{ labels.x }}}}', '{i}']}}}}\n"
        for i in range(900)
    )
    causes = "".join(f"  c{i}: [p{i}, q{i}]\n" for i in range(8_000))
    path.write_text(HEAD + "actions:\n" + steps + "causes:\n" + causes)
    seconds, error = timed(lambda: load_playbooks([path]))
    print(f"large playbook: {path.stat().st_size:,} bytes in {seconds:.2f}s")  # noqa: T201
    assert error is None and seconds < 2


def test_too_many_templates_is_one_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    steps = "".join(
        f"  - {{id: a{i}, uses: backoff, when: 'value > {i}'}}\n" for i in range(MAX_TEMPLATES + 1)
    )
    path.write_text(HEAD + "actions:\n" + steps)
    seconds, error = timed(lambda: load_playbooks([path]))
    assert error is not None and seconds < 2
    assert error.problems == [
        f"{path}:3: actions: 1,001 different templates and conditions; at most 1,000 in one "
        "playbook (split it)"
    ]


def test_libyaml_is_used_when_present() -> None:
    assert LIBYAML == hasattr(yaml, "CSafeLoader")


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5s", 1.5), ("2w", 1209600),
     (" 1d ", 86400), (0, 0), (90, 90), (0.5, 0.5), ("0s", 0)],
)  # fmt: skip
def test_duration_syntax_is_unchanged(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1s", "a duration must not be negative (got '-1s')"),
        (-5, "a duration must not be negative (got -5)"),
        ("1" + "0" * 399 + "s", "is too large: at most 100 years"),
        (10**400, "is too large: at most 100 years"),
        (float("inf"), "is too large"),
        (float("nan"), "not NaN"),
        ("5300w", "is too large"),
        ("soon", "invalid duration 'soon'"),
        ("x" * 10_000, "(10002 characters)"),
        (True, "not a boolean"),
    ],
)
def test_bad_durations_say_why(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(value)


def playbook_with(probe: str = "", policy: str = "", argv_timeout: str = "") -> str:
    timeout = f", timeout: {argv_timeout}" if argv_timeout else ""
    return (
        "name: p\n"
        f"probe: {{kind: http, url: 'http://127.0.0.1:9/', every: 15s{probe}}}\n"
        f"actions: [{{id: a, uses: command, with: {{argv: [echo]{timeout}}}}}]\n"
        f"policy: {{max_attempts: 1{policy}}}\n"
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (playbook_with().replace("every: 15s", "every: 0s"), "probe.every"),
        (playbook_with(probe=", timeout: 0"), "probe.timeout"),
        (playbook_with(policy=", verify_after: 0ms"), "policy.verify_after"),
        (playbook_with(argv_timeout="0s"), "actions[0].with.timeout"),
    ],
)
def test_intervals_and_timeouts_must_be_more_than_zero(
    text: str, field: str, tmp_path: Path
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_playbooks([path])
    [problem] = info.value.problems
    assert f": {field}: " in problem and "must be more than zero" in problem


def test_waits_may_be_zero(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(playbook_with(probe=", for: 0s, keep_firing_for: 0", policy=", cooldown: 0s"))
    [loaded] = load_playbooks([path])
    probe = loaded.playbook.probe_config
    assert (probe.for_, probe.keep_firing_for, loaded.playbook.policy.cooldown) == (0, 0, 0)


# --- templates at run time: every limit, fast -------------------------------------------------

CONTEXT = {"labels": {"deployment": "web", "n": "3"}, "value": 0.5, "big": 10**9}
FAST = Limits(seconds=0.3)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 'x' * 10**9 }}", "the repetition would be 1,000,000,000 long"),
        ("{{ [0] * 10**9 }}", "the repetition would be 1,000,000,000 long"),
        ("{{ 10 ** (10 ** 10) }}", "would be 33,219,280,949 bits long"),
        ("{{ 'x' * big }}", "the repetition would be 1,000,000,000 long"),
        ("{{ (2**40000) * (2**40000) }}", "the product would be 80,002 bits long"),
        ("{{ (2**60000) ** 2 }}", "a 60,001-bit number ** 2 would be 120,001 bits long"),
        ("{{ range(10**9)|list }}", "range() of 1,000,000,000 items; the limit is 10,000"),
        ("{{ range(10**30)|length }}", "range() of 1,000,000,000,000,000,000,000,000,000,000"),
        ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
         "took longer than 0.3s"),
        ("{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}",
         "renders more than 65,536 characters"),
        ("{% set s = 'x' * 60000 %}{{ (s ~ s)|length }}", "builds a string larger than 65,536"),
        ("{% set s = 'x' * 40000 %}{{ (s + s)|length }}", "the concatenation would be 80,000"),
        ("{% set a = [1] %}" + "{% set a = [a, a] %}" * 40 + "{{ a|length }}",
         "builds a value larger than 65,536"),
        ("{% set x %}{% for i in range(100) %}{{ 'y' * 1000 }}{% endfor %}{% endset %}{{ x }}",
         "builds a string larger than 65,536"),
        ("{% set x %}{% for i in range(10000) %}{{ 'y' * 1000 }}{% endfor %}{% endset %}",
         "outputs more than 1,048,576 characters in all"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recursing too deeply"),
        ("{{ 'x'|center(10**9) }}", "center() width would be 1,000,000,000 long"),
        ("{{ 'x'.ljust(10**9) }}", "ljust() width would be 1,000,000,000 long"),
        ("{{ '%0999999999d' % 1 }}", "a % format width of 999999999"),
        ("{{ '%0999999999d'|format(1) }}", "a % format width of 999999999"),
        ("{{ '{:>999999999}'.format(1) }}", "a format width of 999999999"),
        ("{{ ('x' * 60000)|replace('x', 'x' * 60000) }}", "replace() result would be"),
        ("{{ range(10000)|join('x' * 60000) }}", "join() separators would be"),
        ("{{ [1, 2]|batch(10**9, 'x')|list }}", "batch() count would be 1,000,000,000"),
        ("{{ (2).to_bytes(10**9, 'big') }}", "to_bytes() length would be 1,000,000,000"),
        ("{{ [[1]] * 60000|sum(start=[]) }}", "sum() adds numbers only"),
        ("{{ ''.__class__ }}", "unsafe"),
        ("{{ lipsum(10**6) }}", "'lipsum' is undefined"),
        ("{{ labels.missing }}", "has no attribute 'missing'"),
        ("{{ 1 / 0 }}", "division by zero"),
        ("{% for a in x %}" * 25 + "{% endfor %}" * 25, "too many statically nested blocks"),
        ("{{ " + "(" * 200 + "1" + ")" * 200 + " }}", "too deeply"),
    ],
)  # fmt: skip
def test_render_refuses_what_would_hurt_the_daemon(template: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateProblem) as info:
        render({"argv": ["echo", template]}, CONTEXT, limits=FAST)
    assert time.perf_counter() - started < 1.5
    assert message in str(info.value)
    assert str(info.value).startswith("cannot render ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("{{ labels.deployment }}-{{ value }}", "web-0.5"),
        ("{{ labels.deployment ~ '/' ~ labels.n }}", "web/3"),
        ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
        ("{{ [1, 2, 3]|map('string')|join(',') }}", "1,2,3"),
        ("{{ {'a': 1}|tojson }}", '{"a": 1}'),
        ("{{ '%05.1f'|format(value) }}", "000.5"),
        ("{{ '{}-{}'.format(labels.deployment, 2) }}", "web-2"),
        ("{{ labels.deployment|upper|center(7) }}", "  WEB  "),
        ("{{ 2 ** 10 }} {{ 'ab' * 2 }} {{ [1] + [2] }}", "1024 abab [1, 2]"),
        ("{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(labels.n) }}", "<3>"),
        ("{% set ns = namespace(t=0) %}{% for i in range(4) %}{% set ns.t = ns.t + i %}"
         "{% endfor %}{{ ns.t }}", "6"),
        ("{{ (range(10000)|list|length) }}", "10000"),
    ],
)  # fmt: skip
def test_ordinary_templates_still_render(template: str, rendered: str) -> None:
    assert render(template, CONTEXT) == rendered


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("10 ** (10 ** 10) > 0", "would be 33,219,280,949 bits long"),
        ("'x' * big", "the repetition would be 1,000,000,000 long"),
        ("range(10**9)|length > 0", "range() of 1,000,000,000 items"),
        ("value > ", "unexpected 'end of template'"),
    ],
)
def test_evaluate_refuses_bombs(expression: str, message: str) -> None:
    with pytest.raises(TemplateProblem, match=re.escape(message)):
        evaluate(expression, CONTEXT, limits=FAST)


def test_conditions_still_evaluate() -> None:
    assert evaluate("value > 0.4 and labels.deployment == 'web'", CONTEXT)
    assert evaluate("10**10**10 > 0", CONTEXT)  # Jinja's ** is left-associative: 10**100
    assert not evaluate("range(3)|length > 3", CONTEXT)


# --- templates at validate time: constant bombs are errors, never a hang ---------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 'x' * 10**9 }}", "the repetition would be 1,000,000,000 long"),
        ("{{ labels.x ~ ('y' * 10**9) }}", "the repetition would be 1,000,000,000 long"),
        ("{{ labels.x|default(range(10**9)|list) }}", "range() of 1,000,000,000 items"),
        ("{% for i in range(10**9) %}{{ i }}{% endfor %}", "range() of 1,000,000,000 items"),
        ("{{ 'x'|center(10**9) }}", "center() width"),
        ("{{ " + "(" * 200 + "1" + ")" * 200 + " }}", "nested too deeply"),
        ("{{ 1" + " + 1" * 100 + " }}", "nested more than 50 levels deep"),
        ("{% for a in x %}" * 11 + "{% endfor %}" * 11, "blocks nested more than 10 deep"),
        ("{{ x", "unexpected end of template"),
    ],
)
def test_check_template_finds_bombs_that_need_no_data(template: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateProblem) as info:
        check_template(template)
    assert time.perf_counter() - started < 1.5
    assert str(info.value).startswith("bad template: ") and message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "{{ labels.x * 10**9 }}",  # needs data: caught when it renders
        "{{ labels.deployment }}",
        "{{ [1, 2]|join(',') ~ '-' ~ 'x' }}",
    ],
)
def test_check_template_accepts_what_needs_data_to_go_wrong(template: str) -> None:
    check_template(template)


def test_check_expression_finds_constant_bombs() -> None:
    with pytest.raises(TemplateProblem, match=r"^bad condition: a part that needs no data"):
        check_expression("value > 1 and 10 ** (10 ** 10) > 0")
    check_expression("value > 1 and labels.n|int ** 2 > 4")


def test_a_slow_template_in_a_playbook_validates_and_escalates_when_it_runs(
    tmp_path: Path,
) -> None:
    loop = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    path = tmp_path / "slow.yaml"
    path.write_text(HEAD + f"actions:\n  - {{id: a, uses: command, with: {{argv: ['{loop}']}}}}\n")
    [loaded] = load_playbooks([path])
    started = time.perf_counter()
    with pytest.raises(TemplateProblem, match=r"took longer than 0\.3s"):
        render(loaded.playbook.steps[0].with_, CONTEXT, limits=FAST)
    assert time.perf_counter() - started < 1.5


# --- the fuzzer --------------------------------------------------------------------------------

SCALARS = [
    "0s", "-1s", "1" + "0" * 400 + "s", "1e400", "30s", "", " ", "~", "null", "yes", "0x", "0b",
    "._", "2024-13-45", "1" * 5000, "{{ 'x' * 10**9 }}", "{{ 10 ** (10 ** 10) }}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{{ labels.x }}", "{{", "{% if %}", "10 ** (10 ** 10) > 0", "value >", "kubernetes.restart",
    "command", "http", "prometheus", "metrics", "kubernetes", "\ufeff", "é\u2028", "a:b", "*a",
    "!!python/object:os.system", "\t", "'", '"', "[", "{", "%", "@", "`", "- x", "? x",
]  # fmt: skip
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 10**30, 10**400, -(10**20), 2**63]),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(SCALARS),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=3),
)


def paths_in(data: Any, limit: int = 500) -> list[tuple[Any, ...]]:
    """Paths to values in a parsed document, each shared value once (an earlier mutation may
    have made an alias bomb: its expansion is never walked)."""
    found: list[tuple[Any, ...]] = []
    seen: set[int] = set()
    todo: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while todo and len(found) < limit:
        value, path = todo.pop()
        found.append(path)
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            todo += [(v, (*path, k)) for k, v in value.items()]
        elif isinstance(value, list):
            todo += [(v, (*path, i)) for i, v in enumerate(value)]
    return found


def container_at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def alias_bomb(width: int, levels: int) -> Any:
    """Shared lists: yaml.safe_dump writes them as anchors and aliases."""
    bomb: Any = ["lol"] * width
    for _ in range(levels):
        bomb = [bomb] * width
    return bomb


def structural(draw: Any, data: Any) -> Any:
    """One change to the parsed document: drop, duplicate or rename a key, another value."""
    paths = [p for p in paths_in(data) if p]
    if not paths:
        return draw(VALUES)
    path = draw(st.sampled_from(paths))
    parent, last = container_at(data, path[:-1]), path[-1]
    kind = draw(st.sampled_from(["drop", "rename", "value", "bomb", "nest", "copy"]))
    if kind == "drop":
        del parent[last]
    elif kind == "rename" and isinstance(parent, dict):
        parent[draw(st.text(max_size=12) | st.sampled_from(["kind", "uses", "every", "<<"]))] = (
            parent.pop(last)
        )
    elif kind == "value":
        parent[last] = draw(VALUES)
    elif kind == "bomb":
        parent[last] = alias_bomb(draw(st.integers(2, 12)), draw(st.integers(1, 9)))
    elif kind == "nest":
        value = parent[last]
        for _ in range(draw(st.sampled_from([3, MAX_DEPTH - 5, MAX_DEPTH + 1, 150]))):
            value = [value] if draw(st.booleans()) else {"k": value}
        parent[last] = value
    elif kind == "copy" and isinstance(parent, list):
        parent.append(parent[last])
    return data


def dumped(data: Any) -> str:
    try:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10_000)
    except (yaml.YAMLError, RecursionError, ValueError):
        return "{}\n"


def textual(draw: Any, raw: bytes) -> bytes:
    """One change to the bytes: truncation, garbage, another encoding, deep brackets, lines."""
    kind = draw(
        st.sampled_from(
            ["truncate", "garbage", "encoding", "brackets", "line", "bomb", "template", "tab"]
        )
    )
    at = draw(st.integers(0, len(raw)))
    if kind == "truncate":
        return raw[:at]
    if kind == "garbage":
        return raw[:at] + draw(st.binary(min_size=1, max_size=40)) + raw[at:]
    if kind == "encoding":
        encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "utf-8-sig"]))
        return raw.decode("utf-8", "replace").encode(encoding, "replace")
    if kind == "brackets":
        depth = draw(st.sampled_from([MAX_DEPTH, MAX_DEPTH + 1, 1000, 5000]))
        opening, closing = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        return raw[:at] + (opening * depth + closing * depth).encode() + raw[at:]
    lines = raw.split(b"\n")
    index = draw(st.integers(0, max(len(lines) - 1, 0)))
    if kind == "line":
        if draw(st.booleans()):
            lines.insert(index, lines[index])  # a duplicate key, most of the time
        else:
            del lines[index]
        return b"\n".join(lines)
    if kind == "bomb":
        levels = draw(st.integers(5, 9))
        bomb = ["x0: &x0 [" + ",".join(["lol"] * 9) + "]"]
        bomb += [f"x{n}: &x{n} [" + ",".join([f"*x{n - 1}"] * 9) + "]" for n in range(1, levels)]
        return "\n".join(bomb).encode() + b"\n" + raw
    if kind == "template":  # the first template becomes a bomb
        bomb = draw(st.sampled_from([s for s in SCALARS if "{" in s or "**" in s]))
        bomb = bomb if "{" in bomb else "{{ " + bomb + " }}"
        return re.sub(rb"\{\{[^}]*\}\}", lambda _: bomb.encode(), raw, count=1)
    return raw[:at] + b"\t" + raw[at:]


@st.composite
def mutated(draw: Any, bases: list[tuple[str, str]]) -> tuple[str, bytes]:
    name, text = draw(st.sampled_from(bases))
    raw = text.encode()
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            try:
                data = yaml.safe_load(raw.decode("utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
                data = None
            if isinstance(data, dict):
                raw = dumped(structural(draw, data)).encode()
                continue
        raw = textual(draw, raw)
    return name, raw


@dataclass
class Figures:
    cases: int = 0
    rejected: int = 0
    seconds: list[float] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")

    def record(self, seconds: float, name: str, rejected: bool) -> None:
        self.cases += 1
        self.rejected += rejected
        self.seconds.append(seconds)
        self.slowest = max(self.slowest, (seconds, name))

    def report(self, what: str, passed: str = "loaded") -> str:
        """(An unexpected exception fails the test before this is printed.)"""
        return (
            f"{what}: {self.cases} cases, {self.rejected} rejected cleanly, "
            f"{self.cases - self.rejected} {passed}; total {sum(self.seconds):.1f}s, slowest "
            f"{self.slowest[0] * 1000:.0f} ms (from {self.slowest[1]})"
        )


def fuzz(
    tmp_path: Path, bases: list[tuple[str, str]], load: Callable[[Path], Any], examples: int
) -> Figures:
    figures = Figures()
    counter = iter(range(10**9))

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=mutated(bases))
    def run(case: tuple[str, bytes]) -> None:
        name, raw = case
        path = tmp_path / f"case-{next(counter)}.yaml"
        path.write_bytes(raw)
        started = time.perf_counter()
        try:
            load(path)
            rejected = False
        except ConfigError as exc:
            assert_clean(exc.problems, path)
            rejected = True
        figures.record(time.perf_counter() - started, name, rejected)
        path.unlink()

    run()
    return figures


def test_fuzzed_playbooks_are_rejected_cleanly_and_fast(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    bases = [(p.name, p.read_text()) for p in PLAYBOOKS]
    figures = fuzz(tmp_path_factory.mktemp("fuzz"), bases, lambda p: load_playbooks([p]), 1200)
    print(figures.report("playbooks"))  # noqa: T201
    assert figures.cases >= 1000
    assert figures.slowest[0] < 2
    assert 0 < figures.rejected < figures.cases  # the mutations do not all miss, nor all hit


def test_fuzzed_configs_are_rejected_cleanly_and_fast(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    example = CONFIG.read_text()
    with_agents = re.sub(r"(?m)^#(?=[a-z]|  )", "", example)  # the commented agents block
    bases = [("opsmedic.yaml", example), ("opsmedic.yaml+agents", with_agents)]
    figures = fuzz(tmp_path_factory.mktemp("fuzz"), bases, load_settings, 300)
    print(figures.report("configs"))  # noqa: T201
    assert figures.slowest[0] < 2
    assert 0 < figures.rejected < figures.cases


def test_the_fuzzer_starts_from_valid_documents(tmp_path: Path) -> None:
    assert len(load_playbooks(PLAYBOOKS)) == len(PLAYBOOKS)
    load_settings(CONFIG)
    with_agents = tmp_path / "opsmedic.yaml"
    with_agents.write_text(re.sub(r"(?m)^#(?=[a-z]|  )", "", CONFIG.read_text()))
    assert set(load_settings(with_agents).agents) == {"triage", "deploy", "backup", "local"}


NUMBERS = ["0", "3", "-1", "10000", "10**9", "10**(10**10)", "big", "labels.n|int"]
FRAGMENTS = st.sampled_from(
    [
        "{{ labels.deployment }}", "{{ 'ab' * N }}", "{{ [0] * N }}", "{{ N ** N }}",
        "{{ range(N)|list|length }}", "{% for i in range(N) %}", "{% endfor %}",
        "{% set s = 'x' * N %}", "{{ s ~ s ~ s }}", "{% set a = [a, a] %}", "{% set a = [1] %}",
        "{{ a|tojson|length }}", "{{ 'x'|center(N) }}", "{{ '%0Nd' % 1 }}",
        "{{ ('x' * N).replace('x', 'yy') }}", "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
        "{% if value > 0.1 %}", "{% endif %}", "{{ range(N)|join(',') }}", "text ", "{{",
        "{% set x %}", "{% endset %}", "{{ x|length }}", "{{ '{:>N}'.format(1) }}",
    ]
)  # fmt: skip


@st.composite
def templates(draw: Any) -> str:
    parts = draw(st.lists(FRAGMENTS, min_size=1, max_size=8))
    return "".join(p.replace("N", draw(st.sampled_from(NUMBERS))) for p in parts)


def test_fuzzed_templates_render_or_fail_cleanly_and_fast() -> None:
    limits = Limits(seconds=0.05)
    figures = Figures()

    @settings(max_examples=400, deadline=None, derandomize=True, database=None)
    @given(template=templates())
    def run(template: str) -> None:
        started = time.perf_counter()
        try:
            out = render(template, CONTEXT, limits=limits)
            assert len(out) <= limits.size
            rejected = False
        except TemplateProblem as exc:
            assert "\n" not in str(exc)
            rejected = True
        figures.record(time.perf_counter() - started, template[:40], rejected)

    run()
    print(figures.report("templates", passed="rendered"))  # noqa: T201
    assert figures.slowest[0] < 0.5
    assert 0 < figures.rejected < figures.cases


def test_fuzz_cases_are_the_same_every_run() -> None:
    """derandomize=True: CI sees the same cases every run."""
    bases = [(p.name, p.read_text()) for p in PLAYBOOKS[:2]]

    def cases() -> list[bytes]:
        found: list[bytes] = []

        @settings(max_examples=20, deadline=None, derandomize=True, database=None)
        @given(case=mutated(bases))
        def collect(case: tuple[str, bytes]) -> None:
            found.append(case[1])

        collect()
        return found

    assert cases() == cases()
