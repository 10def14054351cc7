"""The ConversationRelay side of a call: one WebSocket frame in, zero or more frames out.

API Gateway invokes the function once per frame, unordered, so everything a frame needs is
in DynamoDB: the connection's call, the turn counter, the pending handoff. A prompt claims
a turn; an interrupt moves past it; the prompt re-reads the turn before a frame whenever the
last confirmation is older than the speaker's window, so speech the caller talked over is not sent. A handoff is stored before the caller hears
about it, and exactly one `end` carries it, after the final `text` with `last: true`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from typing import NamedTuple, Protocol

from .. import log_context
from ..agent.policy import Escalation
from ..agent.turn import AGENT_TROUBLE, Agent
from ..errors import ConcurrentUpdate
from ..handoff import build_payload, tool_result
from ..masking import mask_phone
from ..storage.call_store import CallStore
from ..storage.records import Turn
from .protocol import (
    Dtmf,
    End,
    Error,
    Info,
    Interrupt,
    OutboundMessage,
    Prompt,
    ProtocolError,
    Setup,
    Text,
    parse_inbound,
)
from .speaker import Speaker

log = logging.getLogger(__name__)

CHANNEL = "VOICE"
SETUP_GRACE_SECONDS = 1.5
PRESSED_ZERO = Escalation("dtmf_zero", "The caller pressed 0 to speak with a person.")


class FrameSender(Protocol):
    def send(self, message: OutboundMessage) -> bool:
        """Post one frame; False once the connection is gone."""
        ...


class FrameResult(NamedTuple):
    """What a frame did, for the handler's logs and metrics."""

    type: str  # the message type, or "dropped"
    call_sid: str = ""
    handoff_trigger: str = ""  # set when this frame handed the caller off


class RelayPolicy(NamedTuple):
    account_sid: str | None
    routing_attributes: dict
    memory_store_id: str
    history_limit: int


class VoiceRelay:
    def __init__(self, calls: CallStore, agent: Agent, policy: RelayPolicy) -> None:
        self._calls = calls
        self._agent = agent
        self._policy = policy
        # connection -> call is fixed for a connection's life; a warm container skips the lookup.
        self._call_of: OrderedDict[str, str] = OrderedDict()

    def handle(self, connection_id: str, body: str | None, sender: FrameSender, *, now: int) -> FrameResult:
        try:
            message = parse_inbound(body)
        except ProtocolError as exc:
            # Answering a bad frame with a frame could only add an invalid one: log and drop it.
            log.warning("dropped frame on %s: %s", connection_id, exc)
            return FrameResult("dropped")
        if isinstance(message, Setup):
            self._on_setup(connection_id, message, now=now)
            return FrameResult("setup", message.call_sid)
        if isinstance(message, Prompt) and message.last:  # partial transcripts only come with partialPrompts
            return self._on_prompt(connection_id, message.voice_prompt, sender)
        if isinstance(message, Dtmf) and message.digit == "0":
            return self._on_prompt(connection_id, "(pressed 0)", sender, forced=PRESSED_ZERO)
        if isinstance(message, Interrupt):
            self._on_interrupt(connection_id, message)
        elif isinstance(message, Error):
            log.warning("ConversationRelay reported an error on %s: %s", connection_id, message.description)
        elif isinstance(message, Info):
            log.info("ConversationRelay info on %s: %s", connection_id, message.name)
        elif isinstance(message, Dtmf):
            log.info("ignored DTMF %s on %s", message.digit, connection_id)
        return FrameResult(message.type, self._call_of.get(connection_id, ""))

    # -- frames -------------------------------------------------------------------------

    def _on_setup(self, connection_id: str, setup: Setup, *, now: int) -> None:
        if self._policy.account_sid and setup.account_sid != self._policy.account_sid:
            log.warning("setup from another account ignored on %s", connection_id)
            return
        conversation_id = str(setup.custom_parameters.get("conversationId") or f"conv_{uuid.uuid4().hex}")
        self._calls.bind_connection(
            call_sid=setup.call_sid,
            connection_id=connection_id,
            session_id=setup.session_id,
            caller=setup.from_,
            agent_number=setup.to,
            account_sid=setup.account_sid,
            conversation_id=conversation_id[:128],
            now=now,
        )
        self._remember(connection_id, setup.call_sid)
        log.info("call %s bound to connection %s (caller %s)", setup.call_sid, connection_id, mask_phone(setup.from_))

    def _on_prompt(
        self, connection_id: str, text: str, sender: FrameSender, forced: Escalation | None = None
    ) -> FrameResult:
        call_sid = self._call_sid(connection_id)
        if call_sid is None:
            log.warning("prompt before setup, or for an unknown connection %s: dropped", connection_id)
            return FrameResult("dropped")
        claimed_at = time.monotonic()
        try:
            call = self._calls.start_turn(call_sid, connection_id, text)
        except ConcurrentUpdate:
            log.warning("prompt on %s, which no longer carries call %s: dropped", connection_id, call_sid)
            return FrameResult("dropped", call_sid)
        if call.handoff_state:
            log.info("call %s is being handed off; the AI stays silent", call_sid)
            return FrameResult("prompt", call_sid)
        try:
            trigger = self._run_turn(call_sid, call, text, sender, forced, claimed_at)
        except Exception:
            log.exception("voice turn failed on call %s; handing the caller to a person", call_sid)
            self._emergency_handoff(call_sid, call.conversation_id, sender)
            trigger = "agent_error"
        return FrameResult("prompt", call_sid, trigger)

    def _run_turn(self, call_sid, call, text, sender, forced, claimed_at: float) -> str:
        """Returns the trigger of the handoff this turn made, or ""."""

        def on_handoff(reason: str) -> dict[str, str]:
            payload = self._payload(call.conversation_id, reason)
            if self._calls.store_handoff(call_sid, payload_json=payload.to_json(), reason=reason):
                return tool_result(CHANNEL)
            return tool_result(CHANNEL, error="a handoff is already under way for this call")

        # Claiming the turn confirmed it current: frames that follow at once need no read.
        speaker = Speaker(sender.send, lambda: self._calls.current_turn(call_sid) == call.turn, confirmed_at=claimed_at)
        outcome = self._agent.take_turn(
            call.history[:-1],
            text,
            unresolved_attempts=call.unresolved_attempts,
            on_handoff=on_handoff,
            escalation=forced,
            speak=speaker.feed,
        )
        if speaker.finish():
            history = (*call.history, Turn("assistant", outcome.reply))[-self._policy.history_limit :]
            self._calls.finish_turn(
                call_sid, turn=call.turn, history=history, unresolved_attempts=outcome.unresolved_attempts
            )
        else:
            log.info("turn %d of call %s was interrupted or its socket closed", call.turn, call_sid)
        if outcome.handed_off:
            # Even if the caller talked over the goodbye: they asked for a person and get one.
            self._send_end(call_sid, sender)
        return outcome.trigger if outcome.handed_off else ""

    def _send_end(self, call_sid: str, sender: FrameSender) -> None:
        payload_json = self._calls.take_handoff_for_end(call_sid)
        if payload_json is None:
            log.info("call %s: end already sent for its handoff", call_sid)
            return
        if not sender.send(End(handoff_data=payload_json)):
            # The stored payload is still there: the action callback routes the call with it.
            log.warning("call %s: end not delivered; the action callback will use the stored handoff", call_sid)

    def _emergency_handoff(self, call_sid: str, conversation_id: str, sender: FrameSender) -> None:
        payload = self._payload(conversation_id, "The AI agent hit a technical problem during the call.")
        try:
            self._calls.store_handoff(call_sid, payload_json=payload.to_json(), reason="agent_error")
        except Exception:
            log.exception("could not store the emergency handoff for call %s", call_sid)
        sender.send(Text(token=f"{AGENT_TROUBLE} Let me connect you with a person.", last=True))
        sender.send(End(handoff_data=payload.to_json()))

    def _on_interrupt(self, connection_id: str, interrupt: Interrupt) -> None:
        call_sid = self._call_sid(connection_id)
        if call_sid is None:
            log.warning("interrupt for an unknown connection %s: dropped", connection_id)
            return
        self._calls.record_interrupt(
            call_sid, interrupt.utterance_until_interrupt, history_limit=self._policy.history_limit
        )

    # -- helpers ------------------------------------------------------------------------

    def _payload(self, conversation_id: str, reason: str):
        return build_payload(
            conversation_id=conversation_id,
            reason=reason,
            routing_attributes=self._policy.routing_attributes,
            store_id=self._policy.memory_store_id,
        )

    def _call_sid(self, connection_id: str) -> str | None:
        call_sid = self._call_of.get(connection_id)
        if call_sid:
            log_context.bind(call_sid=call_sid)
        deadline = time.monotonic() + SETUP_GRACE_SECONDS
        while call_sid is None:
            call_sid = self._calls.call_for_connection(connection_id)
            if call_sid:
                self._remember(connection_id, call_sid)
            elif time.monotonic() >= deadline:
                return None
            else:
                # Frames are separate invocations: this one may have overtaken the setup still being stored.
                time.sleep(0.1)
        return call_sid

    def _remember(self, connection_id: str, call_sid: str) -> None:
        log_context.bind(call_sid=call_sid)
        self._call_of[connection_id] = call_sid
        self._call_of.move_to_end(connection_id)
        while len(self._call_of) > 1024:
            self._call_of.popitem(last=False)
