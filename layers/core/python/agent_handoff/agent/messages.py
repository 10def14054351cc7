"""Provider-neutral chat messages, tool specs and completions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from ..deadline import Deadline


class ToolSpec(NamedTuple):
    name: str
    description: str
    parameters: dict[str, Any]


class ToolCall(NamedTuple):
    id: str
    name: str
    # None when the model sent arguments that are not a JSON object.
    arguments: dict[str, Any] | None


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["user", "assistant", "tool"]
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    tool_name: str = ""
    tool_result: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def tool(cls, call: ToolCall, result: dict[str, Any]) -> ChatMessage:
        return cls(role="tool", tool_call_id=call.id, tool_name=call.name, tool_result=result)


class Completion(NamedTuple):
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    # Set by providers that know they did not answer the question (the rules agent's fallback).
    unresolved: bool = False


class ChatProvider(Protocol):
    def complete(
        self,
        system: str,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        *,
        deadline: Deadline | None = None,
    ) -> Completion:
        """One model call, finished by `deadline`. Raises ProviderError on any failure, timeout or unusable answer."""
        ...


class StreamingChatProvider(ChatProvider, Protocol):
    def stream(
        self,
        system: str,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        *,
        deadline: Deadline | None = None,
    ) -> Iterator[str | Completion]:
        """Text deltas as they come, then the whole Completion last. Raises ProviderError like complete()."""
        ...
