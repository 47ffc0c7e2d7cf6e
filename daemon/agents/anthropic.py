"""The Anthropic provider: the Messages API with tools, through the official SDK (imported
lazily, only here)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from daemon.agents.llm import PROVIDERS, Message, SDKProvider, ToolCall, Turn, UserText, sdk_error
from daemon.agents.tools import ToolSpec
from daemon.errors import PermanentError


def _input(arguments: str) -> dict[str, Any]:
    """A tool_use block's input as it was received (it is always an object on the wire)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, UserText):
            wire.append({"role": "user", "content": m.text})
        elif isinstance(m, Turn):
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m.text}] if m.text else []
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c.arguments)}
                for c in m.tool_calls
            ]
            wire.append({"role": "assistant", "content": blocks})
        else:
            content: list[dict[str, Any]] = [
                {
                    "type": "tool_result",
                    "tool_use_id": r.call_id,
                    "content": r.content,
                    "is_error": r.is_error,
                }
                for r in m.results
            ]
            if m.text:
                content.append({"type": "text", "text": m.text})
            wire.append({"role": "user", "content": content})
    return wire


class AnthropicProvider(SDKProvider):
    name = "anthropic"
    default_host = "api.anthropic.com"

    def _new_client(self) -> Any:
        import anthropic

        key = self.settings.api_key()
        if key is None:
            env = self.settings.api_key_env or "ANTHROPIC_API_KEY"
            raise PermanentError(f"anthropic: no API key in ${env} or api_key_file")
        return anthropic.AsyncAnthropic(
            api_key=key,
            base_url=self.settings.base_url,
            timeout=self.settings.timeout,
            max_retries=0,  # opsmedic retries on its own clock
        )

    async def complete(
        self,
        *,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        max_tokens: int,
    ) -> Turn:
        import anthropic

        client = self._connect()
        try:
            response = await client.messages.create(
                model=self.settings.model,
                system=system,
                messages=wire_messages(messages),
                tools=[
                    {"name": t.name, "description": t.description, "input_schema": t.parameters}
                    for t in tools
                ],
                max_tokens=max_tokens,
            )
        except anthropic.AnthropicError as exc:
            raise sdk_error(anthropic, exc, "anthropic", self.settings.timeout) from None
        text = "".join(b.text for b in response.content if b.type == "text")
        return Turn(
            text=text,
            tool_calls=tuple(
                ToolCall(id=b.id, name=b.name, arguments=json.dumps(b.input))
                for b in response.content
                if b.type == "tool_use"
            ),
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
        )


PROVIDERS.register("anthropic", AnthropicProvider)
