"""`opsmedic eval`: recorded scenarios scored per agent; nothing runs, nothing acts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from daemon.agents import AGENTS, Decision, DiagnosisRequest
from daemon.cli import main
from daemon.errors import ConfigError
from daemon.evaluation import evaluate, load_scenarios, summary
from tests.fakes.llm import FakeOpenAI, Reply, ToolCall

SHIPPED = Path(__file__).parent / "scenarios"

PLAYBOOK = {
    "name": "shop-workloads",
    "probe": {"kind": "kubernetes", "namespace": "shop"},
    "actions": [
        {
            "id": "rollback",
            "uses": "kubernetes.rollback",
            "when": "evidence.image_changed and evidence.last_rollout_age_seconds < 1800",
            "with": {"namespace": "shop", "deployment": "{{ labels.name }}"},
        },
        {
            "id": "restart",
            "uses": "kubernetes.restart",
            "with": {"namespace": "shop", "deployment": "{{ labels.name }}"},
        },
    ],
}


class RogueAgent:
    """An agent that answers with an action no playbook lists."""

    name = "eval-rogue"

    async def diagnose(self, request: DiagnosisRequest) -> Decision:
        return Decision(action="kubernetes.delete_pod", reason="ignore previous instructions")


AGENTS.register("eval-rogue", RogueAgent)


def scenario(directory: Path, name: str, evidence: dict[str, object], accept: list[str]) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.yaml"
    document = {
        "name": name,
        "category": "deployment",
        "description": "test scenario",
        "playbook": PLAYBOOK,
        "incident": {"labels": {"namespace": "shop", "kind": "Deployment", "name": "web"}},
        "evidence": evidence,
        "accept": accept,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def two(tmp_path: Path) -> Path:
    root = tmp_path / "scenarios"
    fresh = {"image_changed": True, "last_rollout_age_seconds": 300}
    scenario(root, "bad-image", fresh, ["rollback"])
    scenario(root, "config-crash", {"image_changed": False}, ["escalate"])  # no cause: restart
    return root


async def test_rules_are_scored_against_acceptable_decisions(two: Path) -> None:
    outcomes = await evaluate(load_scenarios(two), "rules")
    assert [(o.scenario, o.decision, o.passed) for o in outcomes] == [
        ("bad-image", "rollback", True),
        ("config-crash", "restart", False),
    ]
    result = summary(outcomes, "rules")
    assert (result["passed"], result["scenarios"], result["pass_rate"]) == (1, 2, 0.5)
    assert (result["harmful"], result["must_escalate"]) == (1, 1)  # a restart where only
    assert result["by_category"] == {  # escalate was acceptable
        "deployment": {"scenarios": 2, "passed": 1, "harmful": 1}
    }


async def test_a_cause_in_the_evidence_withholds_the_catch_all(tmp_path: Path) -> None:
    root = tmp_path / "scenarios"
    logs = [
        {
            "pod": "web-1",
            "container": "web",
            "previous": True,
            "exit_code": 1,
            "reason": "Error",
            "lines": ['FATAL: password authentication failed for user "app"'],
        }
    ]
    scenario(root, "secret-rotated", {"image_changed": False, "logs": logs}, ["escalate"])
    [outcome] = await evaluate(load_scenarios(root), "rules")
    assert (outcome.decision, outcome.passed, outcome.harmful) == ("escalate", True, False)
    assert "auth_failed" in outcome.reason and "password authentication failed" in outcome.reason


async def test_an_inconclusive_reading_escalates_before_any_agent_is_asked(
    tmp_path: Path,
) -> None:
    path = scenario(tmp_path / "s", "no-traffic", {"image_changed": False}, ["escalate"])
    document = yaml.safe_load(path.read_text())
    document["incident"]["actionable"] = False
    path.write_text(yaml.safe_dump(document))
    [outcome] = await evaluate(load_scenarios(tmp_path / "s"), "eval-rogue")
    assert (outcome.decision, outcome.decided_by, outcome.passed) == ("escalate", "opsmedic", True)
    assert outcome.reason.startswith("probe inconclusive")


async def test_a_decision_outside_the_playbook_fails_and_is_counted(two: Path) -> None:
    outcomes = await evaluate(load_scenarios(two), "eval-rogue")
    assert all(o.outside_playbook and not o.passed for o in outcomes)
    assert summary(outcomes, "eval-rogue")["outside_playbook"] == 2


def test_cli_prints_the_score_and_json_and_honours_min_pass_rate(
    two: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(two), "--agent", "rules"]) == 0
    out = capsys.readouterr().out
    assert "agent rules: 1/2 passed (50%; deployment 1/2 (harmful 1)); harmful: 1 of 1" in out
    assert "HARMFUL" in out
    assert main(["eval", str(two), "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)["agents"]
    assert report["pass_rate"] == 0.5 and report["outcomes"][1]["decision"] == "restart"
    assert main(["eval", str(two), "--min-pass-rate", "0.9"]) == 1
    assert main(["eval", str(two), "--max-harmful", "0"]) == 1
    assert "more than 0 harmful decisions" in capsys.readouterr().err
    assert main(["eval", str(two), "--max-harmful", "1"]) == 0
    assert main(["eval", str(two), "--agent", "nobody"]) == 2


def test_bad_scenarios_name_file_line_and_field(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    path = scenario(root, "typo", {}, ["rolback"])
    with pytest.raises(ConfigError) as err:
        load_scenarios(root)
    [problem] = err.value.problems
    assert problem.startswith(f"{path}:") and "accept[0]: 'rolback' is neither" in problem
    text = path.read_text().replace("kind: kubernetes", "kind: kubernets")
    path.write_text(text.replace("rolback", "rollback"))
    with pytest.raises(ConfigError) as err:
        load_scenarios(root)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "kubernets" in t)
    assert any(p.startswith(f"{path}:{line}: probe") for p in err.value.problems)


def test_shipped_scenarios_cover_pipelines_and_deployments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenarios = load_scenarios(SHIPPED)
    assert len(scenarios) >= 25
    categories = {s.category for s in scenarios}
    assert categories == {"deployment", "pipeline"}
    assert main(["eval", str(SHIPPED), "--agent", "rules", "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)["agents"]
    assert report["scenarios"] == len(scenarios) and report["outside_playbook"] == 0
    assert report["harmful"] == 0 and report["pass_rate"] >= 0.9  # what CI enforces
    must_escalate = sum(s.must_escalate for s in scenarios)
    assert report["must_escalate"] == must_escalate and must_escalate >= len(scenarios) / 3


def test_llm_agents_are_scored_with_tokens_cost_and_latency(
    two: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    escalate = {"action": "escalate", "reason": "not sure", "confidence": 0.4}
    with FakeOpenAI(
        lambda body: Reply(
            tool_calls=(ToolCall("decide", escalate),), input_tokens=1000, output_tokens=100
        )
    ) as fake:
        config = tmp_path / "opsmedic.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "agents": {
                        "triage": {
                            "provider": "openai",
                            "model": "gpt-test",
                            "base_url": fake.url,
                            "retries": 0,
                        }
                    },
                    "llm": {"prices": {"gpt-test": {"input": 1.0, "output": 10.0}}},
                }
            )
        )
        args = ["eval", str(two), "-c", str(config), "--agent", "rules", "--agent", "triage"]
        assert main([*args, "--json"]) == 0
        rules, triage = json.loads(capsys.readouterr().out)["agents"]
        assert len(fake.requests) == 2  # one per scenario; rules call nobody
        assert main(args) == 0
    assert (rules["passed"], rules["mean_tokens"], rules["total_cost_usd"]) == (1, 0, 0)
    assert [o["decision"] for o in triage["outcomes"]] == ["escalate", "escalate"]
    assert (triage["passed"], triage["mean_tokens"]) == (1, 1100)
    assert triage["total_cost_usd"] == pytest.approx(2 * (1000 * 1 + 100 * 10) / 1e6)
    assert triage["mean_latency_s"] > 0
    comparison = capsys.readouterr().out.splitlines()
    assert any(line.split()[:4] == ["triage", "1/2", "50%", "0"] for line in comparison)
