"""Any OpenAI-compatible Chat Completions endpoint, over httpx, with tool calling."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from ..errors import ProviderError
from .messages import ChatMessage, Completion, ToolCall, ToolSpec


class OpenAIChatProvider:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout_seconds: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # One client per cold start: warm invocations reuse its connection pool.
        self._client = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds, connect=min(3.0, timeout_seconds)),
            transport=transport,
        )
        self._model = model

    def complete(self, system: str, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]) -> Completion:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": "system", "content": system}, *map(_wire_message, messages)],
        }
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in tools
            ]
        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            raise ProviderError("LLM request timed out") from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"LLM request failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ProviderError(f"LLM endpoint answered HTTP {response.status_code}")
        try:
            message = response.json()["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ProviderError("LLM endpoint answered without choices[0].message") from None
        if not isinstance(message, dict):
            raise ProviderError("LLM endpoint answered a message that is not an object")
        return Completion(text=(message.get("content") or "").strip(), tool_calls=_tool_calls(message))


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": json.dumps(message.tool_result)}
    wire: dict[str, Any] = {"role": message.role, "content": message.text or None}
    if message.tool_calls:
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments or {})},
            }
            for call in message.tool_calls
        ]
    return wire


def _tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    calls = []
    for index, raw in enumerate(message.get("tool_calls") or []):
        function = (raw or {}).get("function") or {}
        arguments: Any
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            arguments = None
        calls.append(
            ToolCall(
                id=str(raw.get("id") or f"call_{index}"),
                name=str(function.get("name") or ""),
                arguments=arguments if isinstance(arguments, dict) else None,
            )
        )
    return tuple(calls)
