"""The OpenAI provider: Chat Completions with tools, through the official SDK (imported
lazily, only here). Any OpenAI-compatible server works through `base_url` (Ollama, vLLM)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from daemon.agents.llm import (
    PROVIDERS,
    Message,
    SDKProvider,
    ToolCall,
    Turn,
    UserText,
    sdk_error,
)
from daemon.agents.tools import ToolSpec
from daemon.errors import PermanentError


def wire_messages(system: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for m in messages:
        if isinstance(m, UserText):
            wire.append({"role": "user", "content": m.text})
        elif isinstance(m, Turn):
            message: dict[str, Any] = {"role": "assistant", "content": m.text or None}
            if m.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in m.tool_calls
                ]
            wire.append(message)
        else:
            wire += [
                {"role": "tool", "tool_call_id": r.call_id, "content": r.content} for r in m.results
            ]
            if m.text:
                wire.append({"role": "user", "content": m.text})
    return wire


class OpenAIProvider(SDKProvider):
    name = "openai"
    default_host = "api.openai.com"

    def _new_client(self) -> Any:
        import openai

        key = self.settings.api_key()
        if key is None and self.settings.base_url is None:
            env = self.settings.api_key_env or "OPENAI_API_KEY"
            raise PermanentError(f"openai: no API key in ${env} or api_key_file")
        return openai.AsyncOpenAI(
            api_key=key or "none",  # local OpenAI-compatible servers often need none
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
        import openai

        client = self._connect()
        try:
            response = await client.chat.completions.create(
                model=self.settings.model,
                messages=wire_messages(system, messages),
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": dict(t.parameters),
                        },
                    }
                    for t in tools
                ],
                max_completion_tokens=max_tokens,
            )
        except openai.OpenAIError as exc:
            raise sdk_error(openai, exc, "openai", self.settings.timeout) from None
        if not response.choices:
            raise PermanentError("openai: the answer has no choices")
        message = response.choices[0].message
        usage = response.usage
        return Turn(
            text=message.content or "",
            tool_calls=tuple(
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "")
                for c in message.tool_calls or ()
                if getattr(c, "function", None) is not None
            ),
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
        )


PROVIDERS.register("openai", OpenAIProvider)
