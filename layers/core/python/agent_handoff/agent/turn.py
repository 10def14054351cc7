"""One agent turn: history + system prompt + tools -> the reply, and a handoff when one is due."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ProviderError
from ..handoff import HANDOFF_TOOL_DESCRIPTION, HANDOFF_TOOL_NAME, HANDOFF_TOOL_PARAMETERS
from ..records import Turn
from .messages import ChatMessage, ChatProvider, Completion, ToolCall, ToolSpec
from .policy import Escalation, EscalationPolicy

log = logging.getLogger(__name__)

HANDOFF_TOOL = ToolSpec(HANDOFF_TOOL_NAME, HANDOFF_TOOL_DESCRIPTION, HANDOFF_TOOL_PARAMETERS)

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful customer service agent for our company, talking with a customer over {channel}. "
    "Keep answers short and plain: {style}. "
    "Call the `handoff` tool, with a one-sentence reason for the human agent, when the customer asks for "
    "a human, when you have failed to resolve their issue after two attempts, for billing disputes or "
    "account security, or when the customer is frustrated or dissatisfied. After calling it, tell the "
    "customer that a person will follow up; never claim a handoff that the tool reports as failed."
)
_STYLE = {"SMS": "one or two sentences, no markdown", "VOICE": "spoken sentences, no lists, no markdown, no emoji"}
AGENT_TROUBLE = "I'm sorry, I'm having trouble answering right now."

# The handoff callback receives the reason and returns TAC's tool result (see handoff.tool_result).
HandoffCallback = Callable[[str], dict[str, str]]


@dataclass(frozen=True)
class TurnOutcome:
    reply: str
    handed_off: bool
    trigger: str  # "llm", an Escalation trigger, "agent_error", or "" when no handoff
    unresolved_attempts: int


class Agent:
    def __init__(
        self,
        provider: ChatProvider,
        *,
        channel: str,
        handoff_reply: str,
        system_prompt: str | None = None,
        policy: EscalationPolicy | None = None,
    ) -> None:
        self._provider = provider
        self._channel = channel
        self._handoff_reply = handoff_reply
        self._system = (system_prompt or DEFAULT_SYSTEM_PROMPT).format(
            channel=channel, style=_STYLE.get(channel, "short sentences")
        )
        self._policy = policy or EscalationPolicy()

    def take_turn(
        self,
        history: Sequence[Turn],
        user_text: str,
        *,
        unresolved_attempts: int,
        on_handoff: HandoffCallback,
        escalation: Escalation | None = None,
    ) -> TurnOutcome:
        """`escalation` forces a handoff the channel decided on (a caller pressing 0)."""
        escalation = escalation or self._policy.before_turn(user_text, unresolved_attempts)
        if escalation is not None:
            return self._escalate(escalation, on_handoff, unresolved_attempts)

        attempts = unresolved_attempts + (1 if self._policy.signals_unresolved(user_text) else 0)
        messages = [ChatMessage(role=t.role, text=t.text) for t in history]
        messages.append(ChatMessage(role="user", text=user_text))
        try:
            completion = self._provider.complete(self._system, messages, [HANDOFF_TOOL])
        except ProviderError as exc:
            log.warning("LLM failed, handing off: %s", exc)
            return self._escalate(
                Escalation("agent_error", f"The AI agent was unavailable ({exc})."),
                on_handoff,
                attempts,
                apology=True,
            )

        handoff_call = next((c for c in completion.tool_calls if c.name == HANDOFF_TOOL_NAME), None)
        if handoff_call is not None:
            return self._llm_handoff(messages, completion, handoff_call, on_handoff, attempts)
        if completion.unresolved:
            attempts += 1
            if attempts >= 2:
                return self._escalate(self._policy.unresolved(), on_handoff, attempts)
        if not completion.text:
            # A model that answers nothing (or only calls unknown tools) cannot be left to strand the customer.
            return self._escalate(
                Escalation("agent_error", "The AI agent produced no answer."), on_handoff, attempts, apology=True
            )
        return TurnOutcome(reply=completion.text, handed_off=False, trigger="", unresolved_attempts=attempts)

    def _escalate(
        self, escalation: Escalation, on_handoff: HandoffCallback, attempts: int, *, apology: bool = False
    ) -> TurnOutcome:
        result = on_handoff(escalation.reason)
        if result.get("status") != "handoff_initiated":
            return TurnOutcome(
                reply=f"{AGENT_TROUBLE} Please try again in a few minutes.",
                handed_off=False,
                trigger="",
                unresolved_attempts=attempts,
            )
        reply = f"{AGENT_TROUBLE} {self._handoff_reply}" if apology else self._handoff_reply
        return TurnOutcome(reply=reply, handed_off=True, trigger=escalation.trigger, unresolved_attempts=0)

    def _llm_handoff(
        self,
        messages: list[ChatMessage],
        completion: Completion,
        call: ToolCall,
        on_handoff: HandoffCallback,
        attempts: int,
    ) -> TurnOutcome:
        reason = (call.arguments or {}).get("reason")
        if not isinstance(reason, str) or not reason.strip():
            reason = "The AI agent asked for a human without giving a reason."
        result = on_handoff(reason.strip()[:500])
        initiated = result.get("status") == "handoff_initiated"
        # Answer every tool call the model made; only the handoff call does anything.
        tool_messages = [
            ChatMessage.tool(c, result if c is call else {"status": "error", "error": f"unknown tool {c.name!r}"})
            for c in completion.tool_calls
        ]
        follow_up = [*messages, ChatMessage(role="assistant", text=completion.text, tool_calls=completion.tool_calls)]
        try:
            final = self._provider.complete(self._system, [*follow_up, *tool_messages], [])
            final_text = final.text
        except ProviderError as exc:
            log.warning("LLM failed after the handoff tool; using the configured reply: %s", exc)
            final_text = ""
        if initiated:
            return TurnOutcome(
                reply=final_text or self._handoff_reply, handed_off=True, trigger="llm", unresolved_attempts=0
            )
        return TurnOutcome(
            reply=final_text or f"{AGENT_TROUBLE} Please try again in a few minutes.",
            handed_off=False,
            trigger="",
            unresolved_attempts=attempts,
        )
