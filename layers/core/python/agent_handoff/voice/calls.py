"""The HTTP side of a call: answering it with ConversationRelay, and routing it when a session ends.

Twilio requests the `<Connect action>` URL for every session end. Whatever ended it, a caller
who was promised a person is routed to one: with the `HandoffData` the `end` message carried,
or with the handoff stored on the call when the socket died before `end` went out. A dropped
socket without a handoff reconnects once; a second failure goes to a person too.
Every `<ConversationRelay>` written here carries a fresh socket binding (binding.py); a retried
webhook gets the same one again.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ..agent.summary import conversation_summary
from ..handoff import HandoffPayload, InvalidPayload, bounded_summary, build_payload
from ..masking import mask_phone
from ..storage.call_store import CALL_TTL_SECONDS, CallSession, CallStore, call_key
from ..storage.records import TranscriptPointer
from ..transcript_link import TranscriptLinks
from . import twiml as voice_twiml
from .binding import RelayBindings

log = logging.getLogger(__name__)

MAX_RECONNECTS = 1
BINDING_MARGIN_SECONDS = 60  # a stored binding closer to its expiry than this is issued afresh
NOBODY_AVAILABLE = "We're sorry, no one is available to take your call right now. Please call again later."
GOODBYE = "Thank you for calling. Goodbye."


@dataclass(frozen=True)
class VoiceRouting:
    account_sid: str
    relay: voice_twiml.RelayOptions
    routing_attributes: dict
    memory_store_id: str
    handoff_flow_sid: str | None
    taskrouter_workflow_sid: str | None


@dataclass(frozen=True)
class Routing:
    twiml: str
    target: str = ""  # where a person was asked for: studio-return:FW.., enqueue:WW.., studio:FW.., or ""


@dataclass(frozen=True)
class SessionEnd:
    call_sid: str
    session_status: str  # ended | completed | failed
    call_status: str
    handoff_data: str | None
    error_code: str
    action_url: str
    transcript_base_url: str = ""  # where GET /handoff/transcript is served, for a payload built here


class VoiceCalls:
    def __init__(
        self,
        calls: CallStore,
        routing: VoiceRouting,
        bindings: RelayBindings,
        *,
        clock: Callable[[], float] = time.time,
        links: TranscriptLinks | None = None,
    ) -> None:
        self._calls = calls
        self._routing = routing
        self._bindings = bindings
        self._clock = clock
        self._links = links

    def answer(
        self, *, call_sid: str, caller: str, agent_number: str, action_url: str, return_flow_sid: str = ""
    ) -> str:
        now = int(self._clock())
        call, created = self._calls.open_call(
            CallSession(
                call_sid=call_sid,
                conversation_id=f"conv_{uuid.uuid4().hex}",
                caller=caller,
                agent_number=agent_number,
                account_sid=self._routing.account_sid,
                return_flow_sid=return_flow_sid,
                binding_nonce=secrets.token_urlsafe(16),
                binding_expires_at=now + self._bindings.ttl_seconds,
            ),
            now=now,
        )
        if not created and call.handoff_payload and call.handoff_state in ("pending", "end_sent", "routed"):
            # The handed-off call came back through the handoff flow's TwiML Redirect widget
            # (the flow's incoming-call entry leads here): return it to that flow with its payload.
            log.info("call %s re-entered /voice after its handoff; returning it to the flow", call_sid)
            payload = HandoffPayload.from_json(call.handoff_payload)
            return self._route(call_sid, call, payload, now=int(self._clock()), return_flow_sid=return_flow_sid).twiml
        log.info(
            "call %s from %s %s", call_sid, mask_phone(caller), "answered" if created else "answered again (retry)"
        )
        if call.binding_nonce and call.binding_expires_at > now + BINDING_MARGIN_SECONDS:
            # A retried webhook gets the same TwiML: only one of the two can be acted on.
            binding = self._bindings.issue(call_sid, nonce=call.binding_nonce, expires_at=call.binding_expires_at)
        else:
            binding = self._bindings.issue(call_sid)
        return voice_twiml.connect_relay(
            action_url=action_url,
            options=self._routing.relay,
            parameters={"conversationId": call.conversation_id},
            binding=binding,
        )

    def session_ended(self, end: SessionEnd) -> Routing:
        call = self._calls.get_call(end.call_sid)
        now = int(self._clock())
        if end.session_status == "completed" or end.call_status in ("completed", "canceled", "busy", "no-answer"):
            if call is not None:
                self._calls.close_call(end.call_sid, status="completed", now=now)
            return Routing(voice_twiml.empty())

        payload = self._handoff_payload(end, call)
        if payload is not None:
            return self._route(end.call_sid, call, payload, now=now)
        if end.handoff_data:
            # HandoffData that is not a payload, and none stored: the agent did hand off.
            fresh, pointer = self._payload(call, "The AI agent handed off the call.", "agent_handoff", end, now)
            return self._route(end.call_sid, call, fresh, now=now, transcript=pointer)
        if end.session_status == "ended":
            # The agent ended the session without a handoff: nothing is owed but a goodbye.
            return Routing(voice_twiml.say_and_hang_up(GOODBYE, self._routing.relay.language))

        reconnects = self._calls.count_reconnect(end.call_sid)
        if reconnects <= MAX_RECONNECTS:
            log.warning("call %s: relay session failed (%s); reconnecting", end.call_sid, end.error_code or "no code")
            parameters = {"conversationId": call.conversation_id} if call else {}
            return Routing(
                voice_twiml.connect_relay(
                    action_url=end.action_url,
                    options=self._routing.relay,
                    parameters=parameters,
                    binding=self._bindings.issue(end.call_sid),  # a fresh socket needs a fresh binding
                    greet=False,
                )
            )
        reason = f"The voice connection to the AI agent failed ({end.error_code or 'unknown error'})."
        fresh, pointer = self._payload(call, reason, "connection_failed", end, now)
        return self._route(end.call_sid, call, fresh, now=now, transcript=pointer)

    def _handoff_payload(self, end: SessionEnd, call: CallSession | None) -> HandoffPayload | None:
        if end.handoff_data:
            try:
                return HandoffPayload.from_json(end.handoff_data)
            except InvalidPayload:
                log.warning("call %s: HandoffData is not a HandoffPayload; using the stored handoff", end.call_sid)
        if call is not None and call.handoff_payload and call.handoff_state in ("pending", "end_sent", "routed"):
            return HandoffPayload.from_json(call.handoff_payload)
        return None

    def _route(
        self,
        call_sid: str,
        call: CallSession | None,
        payload: HandoffPayload,
        *,
        now: int,
        return_flow_sid: str = "",
        transcript: TranscriptPointer | None = None,
    ) -> Routing:
        routing = self._routing
        return_flow_sid = return_flow_sid or (call.return_flow_sid if call is not None else "")
        if return_flow_sid:
            target = f"studio-return:{return_flow_sid}"
            twiml = voice_twiml.resume_studio_flow(
                account_sid=routing.account_sid, flow_sid=return_flow_sid, payload=payload
            )
        elif routing.taskrouter_workflow_sid:
            target = f"enqueue:{routing.taskrouter_workflow_sid}"
            twiml = voice_twiml.enqueue_to_flex(
                workflow_sid=routing.taskrouter_workflow_sid, payload=payload, caller=call.caller if call else ""
            )
        elif routing.handoff_flow_sid:
            target = f"studio:{routing.handoff_flow_sid}"
            twiml = voice_twiml.start_studio_flow(
                account_sid=routing.account_sid, flow_sid=routing.handoff_flow_sid, payload=payload
            )
        else:
            log.error("call %s needs a person but no handoff target is configured", call_sid)
            return Routing(voice_twiml.say_and_hang_up(NOBODY_AVAILABLE, routing.relay.language))
        self._calls.mark_routed(call_sid, payload_json=payload.to_json(), target=target, now=now, transcript=transcript)
        log.info("call %s routed to a person via %s", call_sid, target)
        return Routing(twiml, target)

    def _payload(
        self, call: CallSession | None, reason: str, trigger: str, end: SessionEnd, now: int
    ) -> tuple[HandoffPayload, TranscriptPointer | None]:
        """A payload built here, when the relay stored none, and the pointer its transcript link reads."""
        conversation_id = call.conversation_id if call else ""
        summary = conversation_summary(call.history, channel="VOICE") if call else ""
        link = ""
        if self._links is not None and call is not None:
            link = self._links.url(conversation_id, base_url=end.transcript_base_url, now=now)
        payload = build_payload(
            conversation_id=conversation_id,
            reason=reason,
            routing_attributes=self._routing.routing_attributes,
            store_id=self._routing.memory_store_id,
            summary=summary,
            transcript_url=link,
        )
        if call is None or "transcriptUrl" not in payload.attributes:
            return payload, None
        return payload, TranscriptPointer(
            conversation_id=conversation_id,
            target_key=call_key(call.call_sid),
            channel="voice",
            trigger=trigger,
            reason=payload.attributes["reason"],
            summary=bounded_summary(summary),
            handed_off_at=now,
            expires_at=now + CALL_TTL_SECONDS,
        )
