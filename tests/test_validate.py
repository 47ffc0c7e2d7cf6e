"""`opsmedic validate` promises that `run` starts: what run checks at start-up, validate checks
(one function, Settings.startup_problems); PromQL is checked with promtool (or for balanced
brackets without it); the playbook JSON Schema accepts exactly the shipped playbooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

from daemon.clock import FakeClock
from daemon.config import load_config, load_settings, playbook_query_report
from daemon.errors import ConfigError, PermanentError
from daemon.playbook import load_playbooks, playbook_json_schema
from daemon.sandbox.web import ToyWebService
from probes.base import Outcome, ProbeContext
from probes.http import HttpProbe, HttpProbeConfig
from probes.prometheus import check_promql, promql_fields, range_windows, structural_problem
from probes.prometheus_source import PrometheusClient, PrometheusSource
from tests.promserver import PrometheusServer, prometheus_available

ROOT = Path(__file__).parent.parent
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")
UNSET = "OPSMEDIC_TEST_SURELY_UNSET_TOKEN"


def opsmedic(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != UNSET} | env
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
        env=environ,
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def http_playbooks(tmp_path: Path) -> Path:
    write(
        tmp_path / "pb" / "web.yaml", "name: web\nprobe: {kind: http, url: 'http://127.0.0.1:1/'}\n"
    )
    return tmp_path / "pb"


# --- what run checks at start-up, validate checks -------------------------------------------


def test_validate_and_run_report_the_same_start_up_problems_with_file_and_line(
    tmp_path: Path, http_playbooks: Path
) -> None:
    config = write(
        tmp_path / "opsmedic.yaml",
        "playbooks: [pb]\n"
        "database: opsmedic.yaml/state/incidents.db\n"  # under a file
        "prometheus:\n"
        "  default: {url: 'http://127.0.0.1:9', bearer_token_file: secrets/prom-token}\n"
        f"  other: {{url: 'http://:9090', bearer_token_env: {UNSET}}}\n"
        "notify: {slack: {token_file: secrets/slack-token}}\n"
        "redact: {secret_files: [secrets/db-password]}\n"
        "agents:\n"
        "  triage: {provider: openai, model: gpt-4.1, api_key_file: secrets/openai-key}\n",
    )
    expected = [
        f"{config}:2: database: cannot create the incident log "
        f"{tmp_path}/opsmedic.yaml/state/incidents.db: {config} is a file, not a directory",
        f"{config}:4: prometheus.default.bearer_token_file: cannot read bearer_token_file "
        f"{tmp_path}/secrets/prom-token: No such file or directory",
        f"{config}:5: prometheus.other.url: malformed URL 'http://:9090': no host",
        f"{config}:5: prometheus.other.bearer_token_env: ${UNSET} is not set (or is empty); "
        "the bearer token is read from it",
        f"{config}:6: notify.slack.token_file: cannot read the Slack token file "
        f"{tmp_path}/secrets/slack-token: No such file or directory",
        f"{config}:7: redact.secret_files[0]: cannot read redact.secret_files entry "
        f"{tmp_path}/secrets/db-password: No such file or directory",
        f"{config}:9: agents.triage.api_key_file: cannot read api_key_file "
        f"{tmp_path}/secrets/openai-key: No such file or directory",
    ]
    validate = opsmedic("validate", "-c", str(config))
    run = opsmedic("run", "-c", str(config))
    for proc in (validate, run):
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.splitlines() == expected
    settings, source = load_config(config)
    assert settings.startup_problems(source) == expected
    assert set(tmp_path.iterdir()) == {config, http_playbooks}  # no database, no directory


def test_an_unset_bearer_token_variable_stops_run_naming_variable_and_line(
    tmp_path: Path, http_playbooks: Path
) -> None:
    config = write(
        tmp_path / "opsmedic.yaml",
        f"playbooks: [pb]\nprometheus:\n  url: 'http://127.0.0.1:9'\n  bearer_token_env: {UNSET}\n",
    )
    run = opsmedic("run", "-c", str(config))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (
        f"{config}:4: prometheus.default.bearer_token_env: ${UNSET} is not set (or is empty); "
        "the bearer token is read from it"
    )
    assert not (tmp_path / "opsmedic.db").exists()
    ok = opsmedic("validate", "-c", str(config), **{UNSET: "s3cret"})
    assert ok.returncode == 0, ok.stderr
    assert "1 playbook(s) valid" in ok.stdout


def test_readable_secret_files_and_a_creatable_database_pass(
    tmp_path: Path, http_playbooks: Path
) -> None:
    for name in ("prom-token", "slack-token", "db-password", "openai-key"):
        write(tmp_path / "secrets" / name, "value\n")
    config = write(
        tmp_path / "opsmedic.yaml",
        "playbooks: [pb]\n"
        "database: state/deeper/incidents.db\n"
        "prometheus: {default: {bearer_token_file: secrets/prom-token}}\n"
        "notify: {slack: {token_file: secrets/slack-token}}\n"
        "redact: {secret_files: [secrets/db-password]}\n"
        "agents: {triage: {provider: openai, model: m, api_key_file: secrets/openai-key}}\n",
    )
    settings, source = load_config(config)
    assert settings.startup_problems(source) == []
    assert settings.notify.slack.token_file == tmp_path / "secrets" / "slack-token"
    assert not (tmp_path / "state").exists()  # checked, not created


def test_an_empty_token_file_and_a_directory_as_database_are_problems(tmp_path: Path) -> None:
    write(tmp_path / "empty-token", "\n")
    (tmp_path / "db").mkdir()
    config = write(
        tmp_path / "opsmedic.yaml",
        "database: db\nprometheus: {url: 'http://127.0.0.1:9', bearer_token_file: empty-token}\n",
    )
    settings, source = load_config(config)
    assert settings.startup_problems(source) == [
        f"{config}:1: database: {tmp_path}/db is a directory, not an incident log file",
        f"{config}:2: prometheus.default.bearer_token_file: cannot read bearer_token_file "
        f"{tmp_path}/empty-token: the file is empty",
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_database_in_a_read_only_directory_is_a_problem(tmp_path: Path) -> None:
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        config = write(tmp_path / "opsmedic.yaml", "database: ro/sub/incidents.db\n")
        settings, source = load_config(config)
        [problem] = settings.startup_problems(source)
        assert problem == (
            f"{config}:1: database: cannot create the incident log {readonly}/sub/incidents.db: "
            f"directory {readonly} is not writable"
        )
    finally:
        readonly.chmod(0o755)


def test_prometheus_shorthand_is_the_default_source(tmp_path: Path) -> None:
    config = write(tmp_path / "opsmedic.yaml", "prometheus: {url: 'http://prom:9090'}\n")
    assert load_settings(config).prometheus["default"].url == "http://prom:9090"
    write(config, "prometheus:\n  url: 'http://prom:9090'\n  timeot: 5s\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.problems == [
        f"{config}:3: prometheus.default.timeot: unknown field 'timeot' (did you mean 'timeout'?)"
    ]
    write(config, "prometheus: {main: {url: 'http://a:9090'}, url: {url: 'http://b:9090'}}\n")
    assert set(load_settings(config).prometheus) == {"main", "url"}  # named sources as before


async def test_a_missing_bearer_token_file_is_a_permanent_probe_error(tmp_path: Path) -> None:
    source = PrometheusSource(url="http://127.0.0.1:9", bearer_token_file=tmp_path / "gone")
    with pytest.raises(PermanentError, match="cannot read bearer_token_file .*gone"):
        await PrometheusClient("default", source).instant("up", time.time())


# --- PromQL -------------------------------------------------------------------------------


BAD_PROMQL_PLAYBOOK = """\
name: checkout
probe:
  kind: prometheus
  query: |
    sum(rate(http_requests_total{code=~"5.."}[5m]))
      / sum(rate(http_requests_total[5m])
  above: 0.01
  evidence:
    restarts: 'sum(increase(restarts_total{pod=~"{{ labels.deployment }}-.*"}[1h]))'
    broken: 'up{job="x"'
policy: {verify_after: 5m}
"""


@needs_promtool
def test_validate_checks_promql_with_promtool_and_names_file_line_field(tmp_path: Path) -> None:
    playbook = write(tmp_path / "checkout.yaml", BAD_PROMQL_PLAYBOOK)
    proc = opsmedic("validate", str(playbook), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"{playbook}:4: probe.query: invalid PromQL (promtool): unclosed left parenthesis at "
        "line 3 column 1 of the query",
        f"{playbook}:10: probe.evidence.broken: invalid PromQL (promtool): unexpected end of "
        "input inside braces at column 11 of the query",
    ]  # the templated evidence query is left for run time


def test_validate_without_promtool_checks_brackets_and_says_so(tmp_path: Path) -> None:
    playbook = write(tmp_path / "checkout.yaml", BAD_PROMQL_PLAYBOOK)
    proc = opsmedic("validate", str(playbook), cwd=tmp_path, PATH=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "opsmedic validate: note: promtool not found on PATH; PromQL was checked for balanced "
        "brackets and quotes only",
        f"{playbook}:4: probe.query: invalid PromQL: unclosed '(' at line 2 column 8 of the query",
        f"{playbook}:10: probe.evidence.broken: invalid PromQL: unclosed '{{' at column 3 of "
        "the query",
    ]


@needs_promtool
def test_promtool_runs_once_for_all_queries_of_all_playbooks() -> None:
    playbooks = load_playbooks([ROOT / "playbooks"])
    queries = [q for lp in playbooks for _, q in promql_fields(lp.playbook.probe_config)]
    assert len(queries) >= 8  # the canary's, the freshness and error-rate queries, evidence
    started = time.monotonic()
    report = playbook_query_report(playbooks)
    assert report.problems == [] and report.note is None
    assert time.monotonic() - started < 5  # one promtool process, not one per query


def test_canary_and_freshness_queries_are_found() -> None:
    [canary] = load_playbooks([ROOT / "playbooks" / "checkout-canary.yaml"])
    fields = [loc for loc, _ in promql_fields(canary.playbook.probe_config)]
    assert ("traffic",) in fields
    assert ("metrics", 1, "baseline") in fields
    [fresh] = load_playbooks([ROOT / "playbooks" / "pipeline-freshness-prometheus.yaml"])
    assert [loc for loc, _ in promql_fields(fresh.playbook.probe_config, evidence=False)] == [
        ("query",)
    ]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ('sum(rate(x{a="(["}[5m]))', None),  # brackets in strings do not count
        ("sum(rate(x[5m])", "unclosed '(' at column 4 of the query"),
        ('x{a="b}', "unterminated string starting at column 5 of the query"),
        ("sum(x])", "unexpected ']' at column 6 of the query"),
        ("  # only a comment", "empty query"),
    ],
)
def test_structural_check(query: str, problem: str | None) -> None:
    assert structural_problem(query) == problem


def test_missing_promtool_falls_back_to_the_structural_check(tmp_path: Path) -> None:
    check = check_promql(["sum(x)", "sum(x"], promtool=str(tmp_path / "no-promtool"))
    assert check.checker == "structure" and check.problems == {
        1: "invalid PromQL: unclosed '(' at column 4 of the query"
    }
    assert check.note is not None and "promtool did not work" in check.note


def test_range_windows_of_selectors_and_subqueries() -> None:
    query = 'rate(x{path="[9h]"}[5m]) + max_over_time(y[1h30m:1m]) + z offset 2h'
    assert list(range_windows(query)) == [("5m", 300.0), ("1h30m", 5400.0)]


def test_verify_after_shorter_than_the_range_window_warns_without_failing(tmp_path: Path) -> None:
    playbook = write(
        tmp_path / "slow.yaml",
        "name: slow\n"
        "probe: {kind: prometheus, query: 'sum(rate(x[10m])) / sum(rate(y[2m]))', above: 1}\n"
        "policy: {verify_after: 2m}\n",
    )
    default = write(
        tmp_path / "default.yaml",
        "name: default\nprobe: {kind: prometheus, query: 'sum(rate(x[5m]))', above: 1}\n",
    )
    fine = write(
        tmp_path / "fine.yaml",
        "name: fine\nprobe: {kind: prometheus, query: 'sum(rate(x[5m]))', above: 1}\n"
        "policy: {verify_after: 5m}\n",
    )
    proc = opsmedic("validate", str(default), str(fine), str(playbook), cwd=tmp_path)
    assert proc.returncode == 0 and "3 playbook(s) valid" in proc.stdout
    assert proc.stderr.splitlines() == [
        f"{default}:1: policy.verify_after: warning: 1m (default) is shorter than the range "
        "window [5m] of probe.query: verification would judge data mostly from before the "
        "action; set verify_after: 5m or more",
        f"{playbook}:3: policy.verify_after: warning: 2m is shorter than the range window "
        "[10m] of probe.query: verification would judge data mostly from before the action; "
        "set verify_after: 10m or more",
    ]


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    if not prometheus_available():
        pytest.skip("prometheus is not installed")
    with PrometheusServer(tmp_path_factory.mktemp("prom")).start() as server:
        yield server


async def test_bad_data_at_run_time_is_a_permanent_invalid_query_error(
    prom: PrometheusServer, tmp_path: Path
) -> None:
    client = PrometheusClient("default", PrometheusSource(url=prom.url))
    with pytest.raises(PermanentError) as info:
        await client.instant("sum(rate(x[5m])", time.time())
    assert str(info.value).startswith("Prometheus 'default': invalid query (HTTP 400 bad_data): ")
    assert "parse error" in str(info.value) and str(info.value).endswith("query: sum(rate(x[5m])")
    config = write(tmp_path / "opsmedic.yaml", f"prometheus: {{url: '{prom.url}'}}\n")
    playbook = write(
        tmp_path / "bad.yaml",
        "name: bad\nprobe: {kind: prometheus, query: 'sum(rate(x[5m])', above: 1}\n",
    )
    proc = opsmedic("check", "-c", str(config), str(playbook), "--json")
    assert proc.returncode == 3, proc.stderr
    [reading] = json.loads(proc.stdout)["bad"]
    assert reading["outcome"] == "error" and "invalid query" in reading["message"]


# --- http expect_status --------------------------------------------------------------------


async def test_expect_status_takes_one_code_or_a_list(web: ToyWebService) -> None:
    context = ProbeContext(clock=FakeClock())
    web.break_dependency()  # /health answers 503
    for expect, outcome in ((503, Outcome.OK), ([200, 503], Outcome.OK), (200, Outcome.BREACH)):
        config = HttpProbeConfig(url=f"{web.url}/health", expect_status=expect)
        [reading] = await HttpProbe(config, context).check()
        assert reading.outcome is outcome, expect
    with pytest.raises(ValueError, match="less than or equal to 599"):
        HttpProbeConfig(url=f"{web.url}/health", expect_status=2000)


# --- the JSON Schema accepts what validate accepts ---------------------------------------


SHIPPED = sorted(
    [
        *(ROOT / "playbooks").glob("*.yaml"),
        *(ROOT / "daemon" / "sandbox" / "playbooks").glob("*.yaml"),
    ]
)


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft202012Validator:
    schema = playbook_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_playbook_passes_validate_and_the_schema(
    path: Path, schema_validator: jsonschema.Draft202012Validator
) -> None:
    load_playbooks([path])
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in schema_validator.iter_errors(yaml.safe_load(path.read_text()))
    ]
    assert errors == []


ACCEPTED = {
    "templated replicas and names": """\
name: web
probe: {kind: kubernetes, namespace: shop}
actions:
  - id: scale
    uses: kubernetes.scale
    with: {namespace: '{{ labels.namespace }}', deployment: '{{ labels.name }}',
           replicas: '{{ labels.replicas }}', max: 5}
""",
    "the old name dry_run and one status code": """\
name: api
probe: {kind: http, url: 'http://127.0.0.1:1/', expect_status: 204}
policy: {dry_run: true}
""",
}
REJECTED = {
    "a bad playbook name": "name: Web_Shop\nprobe: {kind: http, url: 'http://h/'}\n",
    "a bad namespace that is no template": """\
name: web
probe: {kind: kubernetes, namespace: shop}
actions:
  - {id: restart, uses: kubernetes.restart, with: {namespace: Shop!, deployment: web}}
""",
    "an unknown action parameter": """\
name: web
probe: {kind: kubernetes, namespace: shop}
actions:
  - {id: restart, uses: kubernetes.restart, with: {namespace: shop, deploymnt: web}}
""",
    "a status code out of range": "name: api\nprobe: {kind: http, url: 'http://h/', "
    "expect_status: [2000]}\n",
    "a whole `with:` as a template": """\
name: web
probe: {kind: kubernetes, namespace: shop}
actions:
  - {id: restart, uses: kubernetes.restart, with: '{{ labels }}'}
""",
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_schema_and_validate_both_accept(
    text: str, tmp_path: Path, schema_validator: jsonschema.Draft202012Validator
) -> None:
    load_playbooks([write(tmp_path / "pb.yaml", text)])
    assert list(schema_validator.iter_errors(yaml.safe_load(text))) == []


@pytest.mark.parametrize("text", REJECTED.values(), ids=REJECTED.keys())
def test_schema_and_validate_both_reject(
    text: str, tmp_path: Path, schema_validator: jsonschema.Draft202012Validator
) -> None:
    with pytest.raises(ConfigError):
        load_playbooks([write(tmp_path / "pb.yaml", text)])
    assert list(schema_validator.iter_errors(yaml.safe_load(text))) != []


def test_schema_command_output_validates_the_shipped_playbooks() -> None:
    proc = opsmedic("schema", "playbook")
    assert proc.returncode == 0
    validator = jsonschema.Draft202012Validator(json.loads(proc.stdout))
    rejected = [p.name for p in SHIPPED if not validator.is_valid(yaml.safe_load(p.read_text()))]
    assert rejected == []
