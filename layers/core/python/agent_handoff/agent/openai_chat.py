"""Any OpenAI-compatible Chat Completions endpoint, over httpx, with tool calling and streaming.

Every call is bounded as a whole by its deadline (the turn's, capped at LLM_TIMEOUT_SECONDS):
httpx's timeouts are cut to what remains, and the call itself runs under `bounded`, so a
model that trickles its answer is cut off at the deadline however steadily its bytes arrive.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import ProviderError
from . import answers, bounded
from .messages import ChatMessage, Completion, ToolCall, ToolSpec

if TYPE_CHECKING:
    from ..deadline import Deadline


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
        self._cap = timeout_seconds
        # One client per cold start: warm invocations reuse its connection pool.
        self._client = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds, connect=min(3.0, timeout_seconds)),
            transport=transport,
        )
        self._model = model

    def complete(
        self,
        system: str,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        *,
        deadline: Deadline | None = None,
    ) -> Completion:
        until = bounded.call_deadline(deadline, self._cap)
        body = self._body(system, messages, tools)

        def post() -> httpx.Response:
            # Not streamed, so httpx reads the whole body here, inside the bounded call: it may trickle too.
            return self._client.post("/chat/completions", json=body, timeout=_timeout(until))

        try:
            response = bounded.call(post, until, what="LLM request")
        except httpx.TimeoutException:
            raise ProviderError("LLM request timed out") from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"LLM request failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ProviderError(f"LLM endpoint answered HTTP {response.status_code}")
        answer = answers.obj(answers.loads(response.content, "LLM answer"), "LLM answer")
        choice = answers.first(answer.get("choices"), "LLM answer's choices")
        message = answers.obj(choice.get("message"), "LLM answer's choices[0].message")
        text = answers.text(message.get("content"), "LLM message content")
        return Completion(text=text.strip(), tool_calls=_tool_calls(message.get("tool_calls")))

    def stream(
        self,
        system: str,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        *,
        deadline: Deadline | None = None,
    ) -> Iterator[str | Completion]:
        """Server-sent events: text deltas are yielded as they arrive, tool calls assembled, the Completion last."""
        until = bounded.call_deadline(deadline, self._cap)
        body = {**self._body(system, messages, tools), "stream": True}

        def lines() -> Iterator[str | int]:
            with self._client.stream("POST", "/chat/completions", json=body, timeout=_timeout(until)) as response:
                if response.status_code != 200:
                    yield response.status_code
                    return
                yield from response.iter_lines()

        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finished = False
        try:
            for line in bounded.iterate(lines, until, what="LLM stream"):
                if isinstance(line, int):
                    raise ProviderError(f"LLM endpoint answered HTTP {line}")
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    finished = True
                    break
                delta = _delta(data)
                if delta is None:
                    continue
                content = answers.text(delta.get("content"), "LLM stream delta content")
                if content:
                    text.append(content)
                    yield content
                for part in answers.items(delta.get("tool_calls"), "LLM stream delta tool_calls"):
                    _merge_tool_call(calls, answers.obj(part, "LLM stream tool call"))
        except httpx.TimeoutException:
            raise ProviderError("LLM request timed out") from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"LLM request failed: {type(exc).__name__}") from None
        if not finished:
            # Cut off mid-answer (the connection closed): what came is not known to be the whole reply.
            raise ProviderError("LLM stream ended before [DONE]")
        assembled = tuple(
            answers.tool_call(
                c["id"], c["name"], answers.json_arguments(c["arguments"]), index=i, what="LLM stream tool call"
            )
            for i, (_, c) in enumerate(sorted(calls.items()))
        )
        yield Completion(text="".join(text).strip(), tool_calls=assembled)

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


def _timeout(until: Deadline) -> httpx.Timeout:
    """httpx's timeouts cut to what the call has left, so the worker of an abandoned call ends by then too."""
    left = max(until.remaining(), 0.001)
    return httpx.Timeout(left, connect=min(3.0, left))


def _delta(data: str) -> dict[str, Any] | None:
    """A chunk's delta; None for a chunk without choices (Azure sends one first, with its filter results)."""
    chunk = answers.obj(answers.loads(data, "LLM stream chunk"), "LLM stream chunk")
    choices = answers.items(chunk.get("choices"), "LLM stream chunk's choices")
    if not choices:
        return None
    choice = answers.obj(choices[0], "LLM stream chunk's choices[0]")
    return answers.obj(choice.get("delta", {}), "LLM stream delta")


def _merge_tool_call(calls: dict[int, dict[str, str]], part: dict[str, Any]) -> None:
    """Streamed tool calls arrive in pieces keyed by index: the id and name once, the arguments in parts."""
    index = part.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool):
        raise ProviderError("LLM stream tool call has no integer index")
    call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    function = answers.obj(part.get("function", {}), "LLM stream tool call's function")
    call["id"] = answers.text(part.get("id"), "LLM stream tool call's id") or call["id"]
    call["name"] += answers.text(function.get("name"), "LLM stream tool call's name")
    call["arguments"] += answers.text(function.get("arguments"), "LLM stream tool call's arguments")


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


def _tool_calls(raw_calls: Any) -> tuple[ToolCall, ...]:
    calls = []
    for index, raw in enumerate(answers.items(raw_calls, "LLM message tool_calls")):
        what = f"LLM message tool_calls[{index}]"
        call = answers.obj(raw, what)
        function = answers.obj(call.get("function"), f"{what}.function")
        arguments = answers.json_arguments(function.get("arguments"))
        calls.append(answers.tool_call(call.get("id"), function.get("name"), arguments, index=index, what=what))
    return tuple(calls)
