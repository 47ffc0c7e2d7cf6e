from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from daemon.agents.settings import AgentSettings
from daemon.config import Settings, load_settings
from daemon.errors import ConfigError
from daemon.playbook import load_playbooks, playbook_json_schema

VALID = """\
name: checkout-errors
description: 5xx share of checkout
probe:
  kind: metrics
  url: http://127.0.0.1:9/metrics
  numerator: 'http_requests_total{code=~"5.."}'
  denominator: http_requests_total
  above: 0.01
  every: 30s
  for: 1m
actions:
  - id: restart
    uses: http
    with: {url: "http://127.0.0.1:9/restart?dep={{ labels.deployment }}"}
    when: "value > 0.5"
  - id: rerun
    uses: command
    with:
      argv: [echo, "{{ incident.id }}"]
policy: {max_attempts: 2, verify_after: 2m, cooldown: 30m}
"""


def write(tmp_path: Path, text: str, name: str = "pb.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_playbooks([path])
    return [p.replace(str(path), "pb.yaml") for p in info.value.problems]


def test_valid_playbook_loads_with_parsed_durations(tmp_path: Path) -> None:
    [loaded] = load_playbooks([write(tmp_path, VALID)])
    playbook = loaded.playbook
    assert playbook.probe_config.every == 30 and playbook.probe_config.for_ == 60
    assert playbook.policy.verify_after == 120
    assert [s.id for s in playbook.steps] == ["restart", "rerun"]


def test_unknown_key_names_line_field_and_suggestion(tmp_path: Path) -> None:
    text = VALID.replace("policy: {max_attempts: 2,", "policy: {max_atempts: 2,")
    assert problems(tmp_path, text) == [
        "pb.yaml:20: policy.max_atempts: unknown field 'max_atempts' (did you mean 'max_attempts'?)"
    ]


def test_unknown_key_inside_probe_suggests_probe_field(tmp_path: Path) -> None:
    text = VALID.replace("  denominator:", "  denominatr:")
    assert problems(tmp_path, text) == [
        "pb.yaml:7: probe.denominatr: unknown field 'denominatr' (did you mean 'denominator'?)"
    ]


def test_bad_duration(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID.replace("for: 1m", "for: 1 minute"))
    assert problem.startswith("pb.yaml:10: probe.for: invalid duration '1 minute'")


def test_unknown_uses_suggests_closest(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID.replace("uses: command", "uses: comand"))
    assert problem.startswith(
        "pb.yaml:17: actions[1].uses: unknown uses 'comand' (did you mean 'command'?)"
    )


def test_unknown_probe_kind(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID.replace("kind: metrics", "kind: metric"))
    assert problem.startswith(
        "pb.yaml:4: probe.kind: unknown kind 'metric' (did you mean 'metrics'?)"
    )


def test_bad_jinja_in_with(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID.replace('"{{ incident.id }}"', '"{{ incident.id "'))
    assert problem.startswith("pb.yaml:19: actions[1].with.argv[1]: bad template:")


def test_bad_jinja_in_when(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID.replace('when: "value > 0.5"', 'when: "value >"'))
    assert problem.startswith("pb.yaml:15: actions[0].when: bad condition:")


def test_unknown_action_parameter(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID.replace("argv: [echo", "args: [echo"))
    assert "pb.yaml:19: actions[1].with" in problem


def test_templated_parameter_is_checked_at_run_time_not_load_time(tmp_path: Path) -> None:
    text = VALID.replace(
        'url: "http://127.0.0.1:9/restart?dep={{ labels.deployment }}"', 'url: "{{ evidence.url }}"'
    )
    assert load_playbooks([write(tmp_path, text)])


def test_every_problem_in_a_file_is_reported_in_line_order(tmp_path: Path) -> None:
    text = VALID.replace("for: 1m", "for: soon").replace("uses: command", "uses: nope")
    found = problems(tmp_path, text)
    assert [p.split(":")[1] for p in found] == ["10", "17"]


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    assert problems(tmp_path, VALID + "name: again\n") == ["pb.yaml:21: name: duplicate key"]


def test_duplicate_action_id(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID.replace("id: rerun", "id: restart"))
    assert problem.startswith("pb.yaml:16: actions[1].id: duplicate action id 'restart'")


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID.replace("  above: 0.01", "  above: [0.01"))
    assert problem.startswith("pb.yaml:") and "invalid YAML" in problem


def test_duplicate_playbook_names_across_files(tmp_path: Path) -> None:
    write(tmp_path, VALID, "a.yaml")
    write(tmp_path, VALID, "b.yaml")
    with pytest.raises(ConfigError) as info:
        load_playbooks([tmp_path])
    assert (
        "b.yaml:1: name: playbook name 'checkout-errors' is also used in" in info.value.problems[0]
    )


def test_unknown_agent_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "diagnose: {agent: rule}\n")
    [problem] = Settings().source_problems(load_playbooks([path]))
    assert problem.startswith(f"{path}:21: diagnose.agent: unknown agent 'rule' (did you mean")


def test_agent_named_in_the_config_is_known(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "diagnose: {agent: triage}\n")
    settings = Settings(agents={"triage": AgentSettings(provider="openai", model="m")})
    assert settings.source_problems(load_playbooks([path])) == []


def test_agent_may_set_only_amounts_the_action_bounds(tmp_path: Path) -> None:
    text = VALID.replace(
        "    with:\n      argv:", "    agent_may_set: [argv]\n    with:\n      argv:"
    )
    [problem] = problems(tmp_path, text)
    assert problem == (
        "pb.yaml:18: actions[1].agent_may_set[0]: command does not let agents set 'argv'; "
        "settable: none"
    )


def test_agent_may_not_set_the_bounds_of_scale(tmp_path: Path) -> None:
    scale = """\
name: web
probe: {kind: http, url: "http://127.0.0.1:9/health"}
actions:
  - id: scale-out
    uses: kubernetes.scale
    agent_may_set: [replicas, max]
    with: {namespace: shop, deployment: web, replicas: 3, min: 2, max: 10}
"""
    [problem] = problems(tmp_path, scale)
    assert problem == (
        "pb.yaml:6: actions[0].agent_may_set[1]: kubernetes.scale does not let agents set "
        "'max'; settable: by, replicas"
    )


def test_agent_config_references_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "agents:\n"
        "  triage: {provider: openai, model: m, fallback: [claude], handoffs: [triage]}\n"
        "llm: {default_agent: triag, budget: {per_day_usd: 5}}\n",
        "opsmedic.yaml",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert sorted(p.replace(str(path), "c") for p in info.value.problems) == [
        "c:2: agents.triage.fallback[0]: 'claude' is not another agent's name",
        "c:2: agents.triage.handoffs[0]: 'triage' is not another agent's name",
        "c:2: agents.triage.model: a budget is set but llm.prices has no price for 'm'",
        "c:3: llm.default_agent: no agent named 'triag' under agents:",
    ]


def test_config_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "database: x.db\nnotify:\n  slack: {chanel: '#ops'}\n", "opsmedic.yaml")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.problems == [
        f"{path}:3: notify.slack.chanel: unknown field 'chanel' (did you mean 'channel'?)"
    ]


def test_config_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "database: state/incidents.db\nplaybooks: [pbs]\n", "opsmedic.yaml")
    settings = load_settings(path)
    assert settings.database == tmp_path / "state/incidents.db"
    assert settings.playbooks == [tmp_path / "pbs"]


def test_shipped_example_playbooks_are_valid() -> None:
    loaded = load_playbooks([Path(__file__).parent.parent / "playbooks"])
    assert len(loaded) >= 3


def test_schema_lists_every_probe_kind_and_action_parameters() -> None:
    schema = playbook_json_schema()
    text = str(schema)
    for kind in ("'http'", "'metrics'", "'freshness.sql'", "'command'", "'backoff'"):
        assert kind in text
    assert "argv" in text and schema["additionalProperties"] is False
