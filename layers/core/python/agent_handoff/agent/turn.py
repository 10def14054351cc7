"""One agent turn: history + system prompt + tools -> the reply, and a handoff when one is due.

Everything the customer is to hear goes through one `speak` callback, in order, as soon as
it is known: a streaming provider's text as it arrives, fixed replies when they are decided.
The returned reply is exactly what was spoken, so history records what the customer heard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ..deadline import Deadline
from ..errors import ProviderError
from ..handoff import HANDOFF_TOOL_DESCRIPTION, HANDOFF_TOOL_NAME, HANDOFF_TOOL_PARAMETERS
from ..pan_redaction import redact_pans
from ..storage.records import Turn
from .messages import ChatMessage, ChatProvider, Completion, ToolCall, ToolSpec
from .policy import Escalation, EscalationPolicy
from .summary import conversation_summary

log = logging.getLogger(__name__)

HANDOFF_TOOL = ToolSpec(HANDOFF_TOOL_NAME, HANDOFF_TOOL_DESCRIPTION, HANDOFF_TOOL_PARAMETERS)

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful customer service agent for our company, talking with a customer over {channel}. "
    "Keep answers short and plain: {style}. "
    "Call the `handoff` tool, with a one-sentence reason and a short summary (what the customer needs, what "
    "has been tried) for the human agent, when the customer asks for "
    "a human, when you have failed to resolve their issue after two attempts, for billing disputes or "
    "account security, or when the customer is frustrated or dissatisfied. After calling it, tell the "
    "customer that a person will follow up; never claim a handoff that the tool reports as failed."
)
_STYLE = {"SMS": "one or two sentences, no markdown", "VOICE": "spoken sentences, no lists, no markdown, no emoji"}
AGENT_TROUBLE = "I'm sorry, I'm having trouble answering right now."
TRY_AGAIN = f"{AGENT_TROUBLE} Please try again in a few minutes."
# What the model sees of a message with no text (an MMS with only a picture): a conversation must
# end with the customer's turn, and an empty text is no turn at all to Bedrock.
EMPTY_MESSAGE = "(no text)"

Speak = Callable[[str], None]


class HandoffRequest(NamedTuple):
    """What the channel needs to hand off: the tool's `reason`, a `summary` for the human (the model's,
    else one built from the last turns) and what triggered it ("llm" or an Escalation trigger)."""

    reason: str
    summary: str
    trigger: str


# The handoff callback returns TAC's tool result (see handoff.tool_result).
HandoffCallback = Callable[[HandoffRequest], dict[str, str]]


class TurnOutcome(NamedTuple):
    reply: str
    handed_off: bool
    trigger: str  # "llm", an Escalation trigger, "agent_error", or "" when no handoff
    unresolved_attempts: int


class _Voice:
    """What has been said this turn, forwarded to the channel as it is said."""

    def __init__(self, speak: Speak | None) -> None:
        self._speak = speak
        self.parts: list[str] = []

    def say(self, text: str) -> None:
        if not text:
            return
        if self.parts and not self.parts[-1].endswith((" ", "\n")) and not text.startswith((" ", "\n")):
            text = " " + text
        self.parts.append(text)
        if self._speak is not None:
            self._speak(text)

    def stream(self, delta: str) -> None:
        self.parts.append(delta)
        if self._speak is not None:
            self._speak(delta)

    @property
    def live(self) -> bool:
        """Someone is listening as it is said: worth streaming the model's text to."""
        return self._speak is not None

    @property
    def said(self) -> str:
        return "".join(self.parts).strip()


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
        speak: Speak | None = None,
        deadline: Deadline | None = None,
    ) -> TurnOutcome:
        """`escalation` forces a handoff the channel decided on (a caller pressing 0).

        `speak` receives the reply piece by piece as it becomes known (voice streams it).
        `deadline` bounds every model call of the turn together (the handler's remaining time).
        """
        voice = _Voice(speak)

        def summary(written: object = None) -> str:
            if isinstance(written, str) and written.strip():
                return written.strip()
            return conversation_summary(history, user_text, channel=self._channel)

        escalation = escalation or self._policy.before_turn(user_text, unresolved_attempts)
        if escalation is not None:
            return self._escalate(voice, escalation, on_handoff, unresolved_attempts, summary())

        attempts = unresolved_attempts + (1 if self._policy.signals_unresolved(user_text) else 0)
        messages = [ChatMessage(role=t.role, text=t.text) for t in history]
        messages.append(ChatMessage(role="user", text=user_text if user_text.strip() else EMPTY_MESSAGE))
        try:
            completion = self._ask(voice, messages, [HANDOFF_TOOL], deadline)
        except ProviderError as exc:
            log.warning("LLM failed, handing off: %s", exc)
            trouble = Escalation("agent_error", f"The AI agent was unavailable ({exc}).")
            return self._escalate(voice, trouble, on_handoff, attempts, summary(), apology=True)

        handoff_call = next((c for c in completion.tool_calls if c.name == HANDOFF_TOOL_NAME), None)
        if handoff_call is not None:
            written = (handoff_call.arguments or {}).get("summary")
            return self._llm_handoff(
                voice, messages, completion, handoff_call, on_handoff, attempts, deadline, summary(written)
            )
        if completion.unresolved:
            attempts += 1
            if attempts >= 2:
                return self._escalate(voice, self._policy.unresolved(), on_handoff, attempts, summary())
        if not completion.text:
            # A model that answers nothing (or only calls unknown tools) cannot be left to strand the customer.
            silent = Escalation("agent_error", "The AI agent produced no answer.")
            return self._escalate(voice, silent, on_handoff, attempts, summary(), apology=True)
        if not voice.parts:
            voice.say(completion.text)  # a provider that does not stream
        return TurnOutcome(reply=voice.said, handed_off=False, trigger="", unresolved_attempts=attempts)

    def _ask(
        self, voice: _Voice, messages: list[ChatMessage], tools: list[ToolSpec], deadline: Deadline | None
    ) -> Completion:
        """One model call; a streaming provider's text reaches the channel while the model still writes."""
        stream = getattr(self._provider, "stream", None)
        if stream is None or not voice.live:
            return self._provider.complete(self._system, messages, tools, deadline=deadline)
        completion: Completion | None = None
        for item in stream(self._system, messages, tools, deadline=deadline):
            if isinstance(item, Completion):
                completion = item
            else:
                voice.stream(item)
        if completion is None:
            raise ProviderError("LLM stream ended without a completion")
        return completion

    def _escalate(
        self,
        voice: _Voice,
        escalation: Escalation,
        on_handoff: HandoffCallback,
        attempts: int,
        summary: str,
        *,
        apology: bool = False,
    ) -> TurnOutcome:
        result = on_handoff(HandoffRequest(escalation.reason, summary, escalation.trigger))
        if result.get("status") != "handoff_initiated":
            voice.say(TRY_AGAIN)
            return TurnOutcome(reply=voice.said, handed_off=False, trigger="", unresolved_attempts=attempts)
        voice.say(f"{AGENT_TROUBLE} {self._handoff_reply}" if apology else self._handoff_reply)
        return TurnOutcome(reply=voice.said, handed_off=True, trigger=escalation.trigger, unresolved_attempts=0)

    def _llm_handoff(
        self,
        voice: _Voice,
        messages: list[ChatMessage],
        completion: Completion,
        call: ToolCall,
        on_handoff: HandoffCallback,
        attempts: int,
        deadline: Deadline | None,
        summary: str,
    ) -> TurnOutcome:
        reason = (call.arguments or {}).get("reason")
        if not isinstance(reason, str) or not reason.strip():
            reason = "The AI agent asked for a human without giving a reason."
        # Card numbers out before the cut, which could leave part of one that no longer passes Luhn.
        result = on_handoff(HandoffRequest(redact_pans(reason.strip())[:500], summary, "llm"))
        initiated = result.get("status") == "handoff_initiated"
        if completion.text and not voice.parts:
            voice.say(completion.text)  # what a non-streaming model said alongside its tool call
        # Answer every tool call the model made; only the handoff call does anything.
        tool_messages = [
            ChatMessage.tool(c, result if c is call else {"status": "error", "error": f"unknown tool {c.name!r}"})
            for c in completion.tool_calls
        ]
        follow_up = [*messages, ChatMessage(role="assistant", text=completion.text, tool_calls=completion.tool_calls)]
        spoken_before = len(voice.parts)
        try:
            final = self._ask(voice, [*follow_up, *tool_messages], [], deadline)
            if len(voice.parts) == spoken_before:
                voice.say(final.text)
        except ProviderError as exc:
            log.warning("LLM failed after the handoff tool; using the configured reply: %s", exc)
        if len(voice.parts) == spoken_before:
            voice.say(self._handoff_reply if initiated else TRY_AGAIN)
        if initiated:
            return TurnOutcome(reply=voice.said, handed_off=True, trigger="llm", unresolved_attempts=0)
        return TurnOutcome(reply=voice.said, handed_off=False, trigger="", unresolved_attempts=attempts)
