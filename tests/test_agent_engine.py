"""LLM agents inside the daemon: configured agents decide through the real SDK against a fake
provider; calls are audited in `llm_calls`, the timeline says how a decision was reached, and
`opsmedic incidents show` prints the reasoning and the cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.agents.settings import AgentSettings, LLMSettings
from daemon.cli import main
from daemon.clock import FakeClock
from daemon.config import Settings
from daemon.engine import Engine
from daemon.incidents import IncidentStore, Resolution, Status
from daemon.playbook import load_playbooks
from daemon.sandbox.web import ToyWebService
from tests.fakes.llm import FakeOpenAI, Reply, ToolCall
from tests.test_engine import NAME, kinds, playbook, until

PRICES = {"gpt-test": {"input": 2.0, "output": 8.0}}  # USD per million tokens


def repair(web: ToyWebService) -> dict[str, Any]:
    return {
        "id": "repair",
        "uses": "http",
        "description": "Clear the dependency fault",
        "with": {"url": f"{web.url}/admin/fault", "json": {"dependency_down": False}},
    }


def engine(
    pb: Path, store: IncidentStore, clock: FakeClock, fake: FakeOpenAI, **llm: Any
) -> Engine:
    agent = AgentSettings(provider="openai", model="gpt-test", base_url=fake.url, retries=0)
    settings = Settings(
        probe_retries=0,
        agents={"triage": agent},
        llm=LLMSettings.model_validate({"prices": PRICES, **llm}),
    )
    return Engine(
        playbooks=load_playbooks([pb]), store=store, notifiers=[], clock=clock, settings=settings
    )


def decide(action: str, reason: str, confidence: float = 0.8) -> Reply:
    arguments = {"action": action, "reason": reason, "confidence": confidence}
    return Reply(tool_calls=(ToolCall("decide", arguments),), input_tokens=3000, output_tokens=200)


async def test_default_agent_investigates_decides_and_is_audited(
    tmp_path: Path,
    web: ToyWebService,
    store: IncidentStore,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pb = playbook(tmp_path, web, policy={"verify_after": "1m"}, actions=[repair(web)])
    script = [
        Reply(tool_calls=(ToolCall("incident_history", {}),), input_tokens=2000, output_tokens=50),
        decide("repair", "health reports the dependency down; no earlier incident on record"),
    ]
    with FakeOpenAI(script) as fake:
        daemon = engine(pb, store, clock, fake, default_agent="triage")
        await daemon.start(schedule=False)
        web.break_dependency()
        await daemon.tick(NAME)
        await until(lambda: clock.sleepers == 1, "the responder to wait for verify_after")
        await clock.advance(60)
        await daemon.idle()
        assert len(fake.requests) == 2
        history = fake.requests[1].body["messages"][-1]
        assert history["role"] == "tool" and history["content"].startswith("<tool_output>\n[]")
    [incident] = store.incidents()
    assert incident.status is Status.RESOLVED
    assert incident.resolution == Resolution.AUTO_REMEDIATED
    diagnosed = next(e for e in store.events(incident.id) if e.kind == "diagnosed")
    assert diagnosed.data["agent"] == "triage" and diagnosed.data["action"] == "repair"
    calls = store.llm_calls(incident.id)
    assert [(c["tools"], c["decision"], c["valid"]) for c in calls] == [
        (["incident_history"], "", True),
        (["decide"], "repair", True),
    ]
    cost = (2000 * 2 + 50 * 8 + 3000 * 2 + 200 * 8) / 1e6
    assert sum(c["cost_usd"] for c in calls) == pytest.approx(cost)
    assert diagnosed.data["cost_usd"] == pytest.approx(cost)
    assert main(["incidents", "show", str(incident.id), "--db", str(store.path)]) == 0
    shown = capsys.readouterr().out
    assert "triage → repair (confidence 0.80, 5250 tokens, $0.0120)" in shown
    assert "health reports the dependency down" in shown
    assert "LLM calls (2; 5250 tokens; $0.0120)" in shown
    assert main(["incidents", "show", str(incident.id), "--db", str(store.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["llm_cost_usd"] == pytest.approx(cost)
    usage = ["incidents", "usage", "--db", str(store.path), "--days", "10000"]  # fake clock: 2023
    assert main([*usage, "--json"]) == 0
    [day] = json.loads(capsys.readouterr().out)
    assert (day["day"], day["agent"], day["model"]) == ("2023-11-14", "triage", "gpt-test")
    assert (day["calls"], day["incidents"], day["invalid"]) == (2, 1, 0)
    assert (day["input_tokens"], day["output_tokens"]) == (5000, 250)
    assert day["cost_usd"] == pytest.approx(cost)
    assert main(usage) == 0
    assert capsys.readouterr().out.rstrip().endswith("total: 2 calls, $0.0120")


async def test_auto_without_a_default_agent_means_rules(
    tmp_path: Path, web: ToyWebService, store: IncidentStore, clock: FakeClock
) -> None:
    pb = playbook(tmp_path, web, policy={"verify_after": "1m"}, actions=[repair(web)])
    with FakeOpenAI([]) as fake:
        daemon = engine(pb, store, clock, fake)
        await daemon.start(schedule=False)
        web.break_dependency()
        await daemon.tick(NAME)
        await until(lambda: clock.sleepers == 1, "verify wait")
        assert fake.requests == []
    [incident] = store.incidents()
    diagnosed = next(e for e in store.events(incident.id) if e.kind == "diagnosed")
    assert diagnosed.data["agent"] == "rules"


async def test_over_budget_the_rules_decide_and_the_timeline_says_why(
    tmp_path: Path, web: ToyWebService, store: IncidentStore, clock: FakeClock
) -> None:
    pb = playbook(
        tmp_path,
        web,
        policy={"verify_after": "1m"},
        actions=[repair(web)],
        diagnose={"agent": "triage"},
    )
    expensive = Reply(
        tool_calls=(ToolCall("incident_history", {}),), input_tokens=400_000, output_tokens=0
    )
    with FakeOpenAI([expensive]) as fake:
        daemon = engine(pb, store, clock, fake, budget={"per_incident_usd": 0.5})
        await daemon.start(schedule=False)
        web.break_dependency()
        await daemon.tick(NAME)
        await until(lambda: clock.sleepers == 1, "verify wait")
        assert len(fake.requests) == 1  # $0.80 spent on the first call: no second one
    [incident] = store.incidents()
    events = store.events(incident.id)
    assert kinds(store, incident.id)[:3] == ["opened", "budget_exceeded", "diagnosed"]
    assert "the rules diagnoser decides" in events[1].message
    assert events[2].data["agent"] == "rules" and events[2].data["cost_usd"] == 0.8
    assert store.llm_spend(incident_id=incident.id) == pytest.approx(0.8)
