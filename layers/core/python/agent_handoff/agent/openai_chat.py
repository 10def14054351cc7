"""Any OpenAI-compatible Chat Completions endpoint, over httpx, with tool calling and streaming."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
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

    def complete(
        self, system: str, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], *, deadline: Any = None
    ) -> Completion:
        try:
            response = self._client.post("/chat/completions", json=self._body(system, messages, tools))
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

    def stream(
        self, system: str, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], *, deadline: Any = None
    ) -> Iterator[str | Completion]:
        """Server-sent events: text deltas are yielded as they arrive, tool calls assembled, the Completion last."""
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        try:
            body = {**self._body(system, messages, tools), "stream": True}
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    raise ProviderError(f"LLM endpoint answered HTTP {response.status_code}")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    delta = _delta(data)
                    if delta.get("content"):
                        text.append(delta["content"])
                        yield delta["content"]
                    for part in delta.get("tool_calls") or []:
                        _merge_tool_call(calls, part)
        except httpx.TimeoutException:
            raise ProviderError("LLM request timed out") from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"LLM request failed: {type(exc).__name__}") from None
        assembled = [
            {"id": c["id"], "function": {"name": c["name"], "arguments": c["arguments"]}}
            for _, c in sorted(calls.items())
        ]
        yield Completion(text="".join(text).strip(), tool_calls=_tool_calls({"tool_calls": assembled}))

    def _body(self, system: str, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]) -> dict[str, Any]:
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
        return body


def _delta(data: str) -> dict[str, Any]:
    try:
        delta = json.loads(data)["choices"][0]["delta"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ProviderError("LLM stream sent a chunk without choices[0].delta") from None
    if not isinstance(delta, dict):
        raise ProviderError("LLM stream sent a delta that is not an object")
    return delta


def _merge_tool_call(calls: dict[int, dict[str, str]], part: dict[str, Any]) -> None:
    """Streamed tool calls arrive in pieces keyed by index: the id and name once, the arguments in parts."""
    call = calls.setdefault(int(part.get("index", 0)), {"id": "", "name": "", "arguments": ""})
    function = part.get("function") or {}
    call["id"] = part.get("id") or call["id"]
    call["name"] += function.get("name") or ""
    call["arguments"] += function.get("arguments") or ""


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
