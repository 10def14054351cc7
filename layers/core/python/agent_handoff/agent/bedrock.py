"""Amazon Bedrock's Converse API with tool use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ProviderError
from .messages import ChatMessage, Completion, ToolCall, ToolSpec


class BedrockConverseProvider:
    def __init__(self, *, client: Any, model_id: str) -> None:
        self._client = client
        self._model_id = model_id

    def complete(
        self, system: str, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], *, deadline: Any = None
    ) -> Completion:
        request: dict[str, Any] = {
            "modelId": self._model_id,
            "system": [{"text": system}],
            "messages": _wire_messages(messages),
        }
        if tools:
            request["toolConfig"] = {
                "tools": [
                    {"toolSpec": {"name": t.name, "description": t.description, "inputSchema": {"json": t.parameters}}}
                    for t in tools
                ]
            }
        try:
            response = self._client.converse(**request)
        except Exception as exc:
            code = ((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code")
            raise ProviderError(f"Bedrock Converse failed: {code or type(exc).__name__}") from None
        try:
            content = response["output"]["message"]["content"]
        except (KeyError, TypeError):
            raise ProviderError("Bedrock Converse answered without output.message.content") from None
        texts, calls = [], []
        for block in content or []:
            if "text" in block:
                texts.append(block["text"])
            elif "toolUse" in block:
                use = block["toolUse"]
                arguments = use.get("input")
                calls.append(
                    ToolCall(
                        id=str(use.get("toolUseId", "")),
                        name=str(use.get("name", "")),
                        arguments=arguments if isinstance(arguments, dict) else None,
                    )
                )
        return Completion(text="".join(texts).strip(), tool_calls=tuple(calls))


def _wire_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Converse wants alternating roles starting with the user; merge what the history breaks."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": role, "content": blocks})
    while wire and wire[0]["role"] != "user":
        wire.pop(0)
    return wire


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        status = "error" if message.tool_result.get("status") == "handoff_failed" else "success"
        return [
            {
                "toolResult": {
                    "toolUseId": message.tool_call_id,
                    "content": [{"json": message.tool_result}],
                    "status": status,
                }
            }
        ]
    blocks: list[dict[str, Any]] = [{"text": message.text}] if message.text else []
    blocks += [{"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments or {}}} for c in message.tool_calls]
    return blocks
