"""The LLM fakes, exercised through the real openai and anthropic SDKs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.llm import (
    NO_TURN_LEFT,
    Delay,
    Failure,
    FakeAnthropic,
    FakeOpenAI,
    Reply,
    ToolCall,
)

OPENAI_KEY = "sk-test-openai-secret"
ANTHROPIC_KEY = "sk-ant-test-secret"
# anthropic 2.x warns (an error under filterwarnings=error) for deprecated names such as
# claude-sonnet-4-5, so use a name no SDK release will ever deprecate
ANTHROPIC_MODEL = "claude-test-model"

DECIDE_OPENAI: Any = {
    "type": "function",
    "function": {
        "name": "decide",
        "description": "Pick a remediation.",
        "parameters": {
            "type": "object",
            "properties": {"action": {"type": "string"}, "confidence": {"type": "number"}},
            "required": ["action"],
        },
    },
}
DECIDE_ANTHROPIC: Any = {
    "name": "decide",
    "description": "Pick a remediation.",
    "input_schema": DECIDE_OPENAI["function"]["parameters"],
}
USER: Any = {"role": "user", "content": "web-error-rate fired: 12% 5xx on /checkout"}


# --- OpenAI ------------------------------------------------------------------------------------


@pytest.fixture
def oai_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def oai(oai_fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=oai_fake.url, api_key=OPENAI_KEY, max_retries=0
    ) as client:
        yield client


async def ask_openai(client: openai.AsyncOpenAI, messages: list[Any], **kw: Any) -> Any:
    return await client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[DECIDE_OPENAI], **kw
    )


async def test_openai_tool_call_round_trip(oai_fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    oai_fake.push(
        Reply(tool_calls=(ToolCall("decide", {"action": "restart", "confidence": 0.9}),)),
        Reply(text="Restarted the web deployment."),
    )
    first = await ask_openai(oai, [USER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "decide"
    assert json.loads(call.function.arguments) == {"action": "restart", "confidence": 0.9}

    messages = [
        USER,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"ok": true}'},
    ]
    second = await ask_openai(oai, messages)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "Restarted the web deployment."
    assert second.choices[0].message.tool_calls is None

    sent = oai_fake.requests
    assert [r.path for r in sent] == ["/v1/chat/completions"] * 2
    assert [r.status for r in sent] == [200, 200]
    assert sent[0].body["tools"][0]["function"]["name"] == "decide"
    assert sent[1].body["messages"][2]["tool_call_id"] == call.id
    assert sent[0].undeclared_tools == ()
    assert oai_fake.remaining == 0


async def test_openai_usage_model_and_stop_override(
    oai_fake: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    oai_fake.push(Reply(text="truncated…", input_tokens=1234, output_tokens=56, stop="length"))
    result = await ask_openai(oai, [USER])
    assert result.object == "chat.completion" and result.id.startswith("chatcmpl-")
    assert result.model == "gpt-4o-mini"  # echoed by default
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (1234, 56)
    assert result.usage.total_tokens == 1290


async def test_openai_malformed_arguments_reach_the_client_verbatim(
    oai_fake: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    oai_fake.push(Reply(tool_calls=(ToolCall("decide", '{"action": "restart",'),)))
    result = await ask_openai(oai, [USER])
    assert result.choices[0].message.tool_calls[0].function.arguments == '{"action": "restart",'


async def test_openai_undeclared_tool_is_served_and_noted(
    oai_fake: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    oai_fake.push(Reply(tool_calls=(ToolCall("reboot_datacenter", {}), ToolCall("decide", {}))))
    result = await ask_openai(oai, [USER])
    names = [c.function.name for c in result.choices[0].message.tool_calls]
    assert names == ["reboot_datacenter", "decide"]
    assert oai_fake.requests[0].undeclared_tools == ("reboot_datacenter",)


async def test_openai_rate_limit_carries_retry_after(
    oai_fake: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    oai_fake.push(Failure(429, "Rate limit reached for requests", retry_after=7))
    with pytest.raises(openai.RateLimitError) as caught:
        await ask_openai(oai, [USER])
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    assert "Rate limit reached" in caught.value.message
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")


async def test_openai_server_error(oai_fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    oai_fake.push(Failure(500, "The server had an error"))
    with pytest.raises(openai.InternalServerError) as caught:
        await ask_openai(oai, [USER])
    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"


async def test_openai_delay_past_client_timeout(oai_fake: FakeOpenAI) -> None:
    oai_fake.push(Delay(0.5, Reply(text="too late")))
    async with openai.AsyncOpenAI(
        base_url=oai_fake.url, api_key=OPENAI_KEY, max_retries=0, timeout=0.2
    ) as client:
        with pytest.raises(openai.APITimeoutError):
            await ask_openai(client, [USER])
    assert len(oai_fake.requests) == 1 and oai_fake.requests[0].delay == 0.5


async def test_openai_short_delay_then_answer(
    oai_fake: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    oai_fake.push(Delay(0.05, Reply(text="eventually")))
    result = await ask_openai(oai, [USER])
    assert result.choices[0].message.content == "eventually"


@pytest.mark.parametrize(
    ("messages", "param", "fragment"),
    [
        pytest.param(
            [
                USER,
                {"role": "assistant", "tool_calls": [
                    {"id": "call_a", "type": "function",
                     "function": {"name": "decide", "arguments": "{}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_WRONG", "content": "ok"},
            ],
            "messages.[2].tool_call_id", "'call_WRONG' not found",
            id="wrong-tool-call-id",
        ),
        pytest.param(
            [USER, {"role": "tool", "tool_call_id": "call_a", "content": "ok"}],
            "messages.[1].role", "must be a response to a preceeding message",
            id="tool-without-tool-calls",
        ),
        pytest.param(
            [
                USER,
                {"role": "assistant", "tool_calls": [
                    {"id": "call_a", "type": "function",
                     "function": {"name": "decide", "arguments": "{}"}},
                    {"id": "call_b", "type": "function",
                     "function": {"name": "decide", "arguments": "{}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_a", "content": "ok"},
                {"role": "user", "content": "and?"},
            ],
            "messages.[1].role", "did not have response messages: call_b",
            id="unanswered-tool-call",
        ),
    ],
)  # fmt: skip
async def test_openai_rejects_misthreaded_conversations(
    oai_fake: FakeOpenAI,
    oai: openai.AsyncOpenAI,
    messages: list[dict[str, Any]],
    param: str,
    fragment: str,
) -> None:
    oai_fake.push(Reply(text="never served"))
    with pytest.raises(openai.BadRequestError) as caught:
        await ask_openai(oai, messages)
    assert caught.value.type == "invalid_request_error"
    assert caught.value.param == param
    assert fragment in caught.value.message
    assert oai_fake.remaining == 1  # a rejected request does not consume the scripted turn


async def test_openai_requires_a_model(oai_fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="you must provide a model parameter"):
        await oai.chat.completions.create(model="", messages=[USER])


async def test_openai_exhausted_script(oai_fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    oai_fake.push(Reply(text="only one"))
    await ask_openai(oai, [USER])
    with pytest.raises(openai.InternalServerError, match=NO_TURN_LEFT):
        await ask_openai(oai, [USER])


async def test_openai_callable_script_sees_the_request() -> None:
    def script(body: dict[str, Any]) -> Reply:
        return Reply(text=f"{body['model']} got {len(body['messages'])} messages")

    with FakeOpenAI(script) as fake:
        async with openai.AsyncOpenAI(base_url=fake.url, api_key=OPENAI_KEY, max_retries=0) as c:
            result = await ask_openai(c, [{"role": "system", "content": "be brief"}, USER])
    assert result.choices[0].message.content == "gpt-4o-mini got 2 messages"


async def test_openai_records_auth_and_keeps_secret_out_of_body(
    oai_fake: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    oai_fake.push(Reply(text="ok"))
    await ask_openai(oai, [USER])
    (request,) = oai_fake.requests
    assert request.auth_header == "authorization"
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.api_key == OPENAI_KEY
    assert OPENAI_KEY.encode() not in request.raw


async def test_openai_wrong_key_is_401() -> None:
    with FakeOpenAI([Reply(text="never")], api_key="sk-right") as fake:
        async with openai.AsyncOpenAI(base_url=fake.url, api_key="sk-wrong", max_retries=0) as c:
            with pytest.raises(openai.AuthenticationError) as caught:
                await ask_openai(c, [USER])
    assert caught.value.code == "invalid_api_key"
    assert fake.remaining == 1


# --- Anthropic ---------------------------------------------------------------------------------


@pytest.fixture
def ant_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def ant(ant_fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=ant_fake.url, api_key=ANTHROPIC_KEY, max_retries=0
    ) as client:
        yield client


async def ask_anthropic(client: anthropic.AsyncAnthropic, messages: list[Any], **kw: Any) -> Any:
    return await client.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=512, messages=messages, tools=[DECIDE_ANTHROPIC], **kw
    )


async def test_anthropic_tool_use_round_trip(
    ant_fake: FakeAnthropic, ant: anthropic.AsyncAnthropic
) -> None:
    ant_fake.push(
        Reply(text="Let me decide.", tool_calls=(ToolCall("decide", {"action": "rollback"}),)),
        Reply(text="Rolled back."),
    )
    first = await ask_anthropic(ant, [USER])
    assert first.type == "message" and first.id.startswith("msg_")
    assert first.stop_reason == "tool_use"
    text, use = first.content
    assert text.type == "text" and text.text == "Let me decide."
    assert use.type == "tool_use" and use.name == "decide" and use.id.startswith("toolu_")
    assert use.input == {"action": "rollback"}

    messages = [
        USER,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use.id, "content": "rolled back to v41"},
        ]},
    ]  # fmt: skip
    second = await ask_anthropic(ant, messages)
    assert second.stop_reason == "end_turn"
    assert [b.text for b in second.content] == ["Rolled back."]

    sent = ant_fake.requests
    assert [r.path for r in sent] == ["/v1/messages"] * 2
    assert [r.status for r in sent] == [200, 200]
    assert sent[1].body["messages"][2]["content"][0]["tool_use_id"] == use.id
    assert sent[0].headers["anthropic-version"]
    assert ant_fake.remaining == 0


async def test_anthropic_usage_model_and_stop_override(
    ant_fake: FakeAnthropic, ant: anthropic.AsyncAnthropic
) -> None:
    ant_fake.push(Reply(text="trunc", input_tokens=4321, output_tokens=512, stop="max_tokens"))
    result = await ask_anthropic(ant, [USER])
    assert result.model == ANTHROPIC_MODEL
    assert result.stop_reason == "max_tokens"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (4321, 512)


async def test_anthropic_fixed_model_name() -> None:
    with FakeAnthropic([Reply(text="hi")], model="claude-test-snapshot-20990101") as fake:
        async with anthropic.AsyncAnthropic(
            base_url=fake.url, api_key=ANTHROPIC_KEY, max_retries=0
        ) as client:
            result = await ask_anthropic(client, [USER])
    assert result.model == "claude-test-snapshot-20990101"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param({"confidence": "very"}, {"confidence": "very"}, id="dict-with-wrong-fields"),
        pytest.param('["restart"]', ["restart"], id="json-non-object"),
        pytest.param('{"action": "restart",', '{"action": "restart",', id="not-json"),
    ],
)
async def test_anthropic_bad_tool_input_reaches_the_client(
    ant_fake: FakeAnthropic, ant: anthropic.AsyncAnthropic, arguments: Any, expected: Any
) -> None:
    ant_fake.push(Reply(tool_calls=(ToolCall("decide", arguments),)))
    result = await ask_anthropic(ant, [USER])
    assert result.content[0].input == expected


async def test_anthropic_undeclared_tool_is_served_and_noted(
    ant_fake: FakeAnthropic, ant: anthropic.AsyncAnthropic
) -> None:
    ant_fake.push(Reply(tool_calls=(ToolCall("rm_rf", {"path": "/"}),)))
    result = await ask_anthropic(ant, [USER])
    assert result.content[0].name == "rm_rf"
    assert ant_fake.requests[0].undeclared_tools == ("rm_rf",)


async def test_anthropic_rate_limit_carries_retry_after(
    ant_fake: FakeAnthropic, ant: anthropic.AsyncAnthropic
) -> None:
    ant_fake.push(Failure(429, "Number of request tokens has exceeded your limit", retry_after=3))
    with pytest.raises(anthropic.RateLimitError) as caught:
        await ask_anthropic(ant, [USER])
    err = caught.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "3"
    assert err.body == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "Number of request tokens has exceeded your limit",
        },
    }
    assert err.request_id is not None and err.request_id.startswith("req_")


async def test_anthropic_server_error(
    ant_fake: FakeAnthropic, ant: anthropic.AsyncAnthropic
) -> None:
    ant_fake.push(Failure(500, "Internal server error"))
    with pytest.raises(anthropic.InternalServerError) as caught:
        await ask_anthropic(ant, [USER])
    assert caught.value.status_code == 500
    assert caught.value.type == "api_error"


async def test_anthropic_overloaded(ant_fake: FakeAnthropic, ant: anthropic.AsyncAnthropic) -> None:
    ant_fake.push(Failure(529, "Overloaded"))
    with pytest.raises(anthropic.APIStatusError) as caught:
        await ask_anthropic(ant, [USER])
    assert caught.value.status_code == 529
    assert isinstance(caught.value, anthropic.OverloadedError)
    assert isinstance(caught.value, anthropic.InternalServerError)
    assert caught.value.type == "overloaded_error"


async def test_anthropic_delay_past_client_timeout(ant_fake: FakeAnthropic) -> None:
    ant_fake.push(Delay(0.5, Reply(text="too late")))
    async with anthropic.AsyncAnthropic(
        base_url=ant_fake.url, api_key=ANTHROPIC_KEY, max_retries=0, timeout=0.2
    ) as client:
        with pytest.raises(anthropic.APITimeoutError):
            await ask_anthropic(client, [USER])
    assert len(ant_fake.requests) == 1


ASSISTANT_USES_A = {
    "role": "assistant",
    "content": [{"type": "tool_use", "id": "toolu_a", "name": "decide", "input": {}}],
}


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        pytest.param(
            [USER, ASSISTANT_USES_A, {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_WRONG", "content": "ok"},
            ]}],
            "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
            "toolu_WRONG",
            id="wrong-tool-use-id",
        ),
        pytest.param(
            [USER, {"role": "assistant", "content": "thinking"}, {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "ok"},
            ]}],
            "unexpected `tool_use_id`",
            id="result-without-use",
        ),
        pytest.param(
            [USER, ASSISTANT_USES_A, {"role": "user", "content": "what now?"}],
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately "
            "after: toolu_a",
            id="unanswered-tool-use",
        ),
        pytest.param(
            [{"role": "system", "content": "you are an SRE"}, USER],
            'Unexpected role "system"',
            id="system-role-message",
        ),
    ],
)  # fmt: skip
async def test_anthropic_rejects_misthreaded_conversations(
    ant_fake: FakeAnthropic,
    ant: anthropic.AsyncAnthropic,
    messages: list[dict[str, Any]],
    fragment: str,
) -> None:
    ant_fake.push(Reply(text="never served"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        await ask_anthropic(ant, messages)
    assert caught.value.type == "invalid_request_error"
    assert fragment in (caught.value.api_message or "")
    assert ant_fake.remaining == 1


async def test_anthropic_requires_max_tokens(
    ant_fake: FakeAnthropic, ant: anthropic.AsyncAnthropic
) -> None:
    # the SDK's signature requires max_tokens, so go through its low-level post()
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
        await ant.post(
            "/v1/messages",
            body={"model": ANTHROPIC_MODEL, "messages": [USER]},
            cast_to=anthropic.types.Message,
        )


async def test_anthropic_exhausted_script(
    ant_fake: FakeAnthropic, ant: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(anthropic.InternalServerError, match=NO_TURN_LEFT):
        await ask_anthropic(ant, [USER])


async def test_anthropic_callable_script_sees_the_request() -> None:
    def script(body: dict[str, Any]) -> Reply | Failure:
        if body.get("system") != "you are an SRE":
            return Failure(400, "expected a system prompt")
        return Reply(text=f"{len(body['messages'])} message(s), max_tokens={body['max_tokens']}")

    with FakeAnthropic(script) as fake:
        async with anthropic.AsyncAnthropic(
            base_url=fake.url, api_key=ANTHROPIC_KEY, max_retries=0
        ) as client:
            result = await ask_anthropic(client, [USER], system="you are an SRE")
    assert result.content[0].text == "1 message(s), max_tokens=512"


async def test_anthropic_records_auth_and_keeps_secret_out_of_body(
    ant_fake: FakeAnthropic, ant: anthropic.AsyncAnthropic
) -> None:
    ant_fake.push(Reply(text="ok"))
    await ask_anthropic(ant, [USER])
    (request,) = ant_fake.requests
    # anthropic 2.x sends api_key as a Bearer token (1.x sent x-api-key); the fake takes either
    assert request.auth_header in ("authorization", "x-api-key")
    assert request.api_key == ANTHROPIC_KEY
    assert ANTHROPIC_KEY.encode() not in request.raw


async def test_anthropic_accepts_x_api_key_header() -> None:
    with FakeAnthropic([Reply(text="ok")], api_key=ANTHROPIC_KEY) as fake:
        headers: Any = {"Authorization": anthropic.Omit(), "x-api-key": ANTHROPIC_KEY}
        async with anthropic.AsyncAnthropic(
            base_url=fake.url, auth_token="unused", max_retries=0, default_headers=headers
        ) as client:
            await ask_anthropic(client, [USER])
    (request,) = fake.requests
    assert request.auth_header == "x-api-key" and request.api_key == ANTHROPIC_KEY
    assert "authorization" not in request.headers


async def test_anthropic_wrong_key_is_401() -> None:
    with FakeAnthropic([Reply(text="never")], api_key="sk-ant-right") as fake:
        async with anthropic.AsyncAnthropic(
            base_url=fake.url, api_key="sk-ant-wrong", max_retries=0
        ) as client:
            with pytest.raises(anthropic.AuthenticationError) as caught:
                await ask_anthropic(client, [USER])
    assert caught.value.type == "authentication_error"
