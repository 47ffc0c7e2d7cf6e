"""Benchmark: what one LLM diagnosis costs opsmedic itself, on the shipped eval scenarios.

Per scenario: the size of the first request (system prompt, incident message, tool schemas)
in bytes and in estimated tokens (4 bytes per token), and the wall time of a two-turn
diagnosis (a tool call, then `decide`) through the real openai SDK against the loopback fake
OpenAI server, i.e. opsmedic's loop plus the SDK and HTTP, without any model time.

    python -m bench.agent_prompt [--scenarios tests/scenarios] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from daemon.agents.chain import LLMDiagnosers
from daemon.agents.llm import decide_spec, incident_message, system_prompt
from daemon.agents.settings import AgentSettings, LLMSettings
from daemon.agents.tools import SPECS
from daemon.clock import FakeClock
from daemon.evaluation import Scenario, load_scenarios
from tests.fakes.llm import FakeOpenAI, Reply, ToolCall


def first_request_bytes(scenario: Scenario, settings: AgentSettings) -> int:
    request = scenario.request()
    tools = [*SPECS.values(), decide_spec(request)]
    schemas = json.dumps(
        [{"name": t.name, "description": t.description, "parameters": dict(t.parameters)}
         for t in tools]
    )  # fmt: skip
    text = system_prompt("bench", settings, request) + incident_message(request, None, "")
    return len(text.encode()) + len(schemas.encode())


def script(body: dict[str, object]) -> Reply:
    """Call `incident_history` first, then escalate: two turns per diagnosis."""
    messages = body["messages"]
    assert isinstance(messages, list)  # noqa: S101
    if messages[-1].get("role") == "tool":
        decide = {"action": "escalate", "reason": "bench", "confidence": 0.5}
        return Reply(tool_calls=(ToolCall("decide", decide),))
    return Reply(tool_calls=(ToolCall("incident_history", {}),))


async def diagnosis_seconds(scenarios: list[Scenario], rounds: int) -> list[float]:
    times = []
    with FakeOpenAI(script) as fake:
        settings = AgentSettings(provider="openai", model="bench", base_url=fake.url, retries=0)
        for _ in range(rounds):  # a fresh cache per round: every diagnosis asks the model
            agents = LLMDiagnosers({"bench": settings}, LLMSettings(), clock=FakeClock())
            for scenario in scenarios:
                started = time.perf_counter()
                await agents.diagnose("bench", scenario.request())
                times.append(time.perf_counter() - started)
            await agents.aclose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=Path, default=Path("tests/scenarios"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scenarios = load_scenarios(args.scenarios)
    settings = AgentSettings(provider="openai", model="bench")
    sizes = sorted(first_request_bytes(s, settings) for s in scenarios)
    print(f"scenarios: {len(scenarios)}")  # noqa: T201
    print(  # noqa: T201
        f"first request: min {sizes[0]} B, median {statistics.median(sizes):.0f} B, "
        f"max {sizes[-1]} B (≈{sizes[0] // 4}–{sizes[-1] // 4} tokens at 4 B/token)"
    )
    times = sorted(asyncio.run(diagnosis_seconds(scenarios, args.rounds)))
    print(  # noqa: T201
        f"two-turn diagnosis through the SDK and loopback HTTP ({len(times)} runs): "
        f"median {statistics.median(times) * 1000:.1f} ms, "
        f"p95 {times[int(0.95 * (len(times) - 1))] * 1000:.1f} ms, "
        f"max {times[-1] * 1000:.1f} ms (the first also imports the SDK)"
    )


if __name__ == "__main__":
    main()
