"""Amazon Bedrock's Converse API with tool use.

A botocore client's timeouts are fixed when it is made and bound each socket read, not a call.
A client per remaining time would cost a client's creation (tens of milliseconds: its service
model, endpoint rules) and a new TLS connection on every call. So the one client is made with
the per-call cap (LLM_TIMEOUT_SECONDS) as its read timeout and no retries, a call that has less
than `bounded.MIN_CALL_SECONDS` left is not started, and the turn waits for a started call only
until its deadline (`bounded.call`): the abandoned request ends by the client's read timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError
from . import answers, bounded
from .messages import ChatMessage, Completion, ToolSpec

if TYPE_CHECKING:
    from ..deadline import Deadline


class BedrockConverseProvider:
    def __init__(self, *, client: Any, model_id: str, timeout_seconds: float = 8.0) -> None:
        self._client = client
        self._model_id = model_id
        self._cap = timeout_seconds

    def complete(
        self,
        system: str,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        *,
        deadline: Deadline | None = None,
    ) -> Completion:
        until = bounded.call_deadline(deadline, self._cap)
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
            response = bounded.call(lambda: self._client.converse(**request), until, what="Bedrock Converse")
        except ProviderError:
            raise
        except Exception as exc:  # botocore's errors, and its parser's on a malformed answer
            code = ((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code")
            raise ProviderError(f"Bedrock Converse failed: {code or type(exc).__name__}") from None
        return _completion(response)


def _completion(response: Any) -> Completion:
    output = answers.obj(answers.obj(response, "Converse response").get("output"), "Converse output")
    message = answers.obj(output.get("message"), "Converse output.message")
    texts, calls = [], []
    for index, raw in enumerate(answers.items(message.get("content"), "Converse message content")):
        block = answers.obj(raw, f"Converse content[{index}]")
        if "text" in block:
            texts.append(answers.text(block["text"], f"Converse content[{index}].text"))
        elif "toolUse" in block:
            use = answers.obj(block["toolUse"], f"Converse content[{index}].toolUse")
            what = f"Converse content[{index}].toolUse"
            arguments = use.get("input")  # already a JSON document: a string in it is not JSON to parse again
            calls.append(
                answers.tool_call(
                    use.get("toolUseId"),
                    use.get("name"),
                    arguments if isinstance(arguments, dict) else None,
                    index=index,
                    what=what,
                )
            )
        # Other blocks (reasoning, citations, ...) are not for the customer.
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
