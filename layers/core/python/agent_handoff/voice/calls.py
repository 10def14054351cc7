"""The HTTP side of a call: answering it with ConversationRelay, and routing it when a session ends.

Twilio requests the `<Connect action>` URL for every session end. Whatever ended it, a caller
who was promised a person is routed to one: with the `HandoffData` the `end` message carried,
or with the handoff stored on the call when the socket died before `end` went out. A dropped
socket without a handoff reconnects once; a second failure goes to a person too.
Every `<ConversationRelay>` written here carries a fresh socket binding (binding.py); a retried
webhook gets the same one again.

Both webhooks answer whatever DynamoDB does. A throttled call is sent again while the deadline
allows; past that, the call is answered with ConversationRelay all the same, and a session end
carrying `HandoffData` is routed from it alone. A session end is answered once: its answer is
kept on the call, a retried callback gets it again, and a replayed one (a signed request seen in
a log, posted again) gets it too or, for a session that is no longer the call's, an empty
`<Response/>`; neither changes the live call.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..agent.summary import conversation_summary
from ..deadline import Deadline
from ..errors import StoreError
from ..handoff import HandoffPayload, InvalidPayload, bounded_summary, build_payload
from ..masking import mask_phone
from ..storage.call_store import (
    CALL_TTL_SECONDS,
    CallSession,
    CallStore,
    SessionAnswer,
    SessionAnswered,
    StaleSession,
    call_key,
)
from ..storage.records import TranscriptPointer
from ..storage.retry import while_busy
from ..transcript_link import TranscriptLinks
from . import twiml as voice_twiml
from .binding import RelayBindings

log = logging.getLogger(__name__)

MAX_RECONNECTS = 1
BINDING_MARGIN_SECONDS = 60  # a stored binding closer to its expiry than this is issued afresh
NOBODY_AVAILABLE = "We're sorry, no one is available to take your call right now. Please call again later."
GOODBYE = "Thank you for calling. Goodbye."
# How long a voice webhook keeps sending DynamoDB calls that were throttled: the caller hears silence
# meanwhile, and past this the answer goes out without the write (see the module's docstring).
STORE_PATIENCE_SECONDS = 3.0

T = TypeVar("T")


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
    repeated: bool = False  # the answer this session's end got before (a retried or replayed callback)
    stale: bool = False  # a callback for a session that is not the call's: answered with nothing
    store_faults: tuple[str, ...] = ()  # steps DynamoDB failed past their retries; the answer stands without them


@dataclass(frozen=True)
class SessionEnd:
    call_sid: str
    session_status: str  # ended | completed | failed
    call_status: str
    handoff_data: str | None
    error_code: str
    action_url: str
    transcript_base_url: str = ""  # where GET /handoff/transcript is served, for a payload built here
    session_id: str = ""


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
        self,
        *,
        call_sid: str,
        caller: str,
        agent_number: str,
        action_url: str,
        return_flow_sid: str = "",
        deadline: Deadline | None = None,
    ) -> Routing:
        now = int(self._clock())
        opened = CallSession(
            call_sid=call_sid,
            conversation_id=f"conv_{uuid.uuid4().hex}",
            caller=caller,
            agent_number=agent_number,
            account_sid=self._routing.account_sid,
            return_flow_sid=return_flow_sid,
            binding_nonce=secrets.token_urlsafe(16),
            binding_expires_at=now + self._bindings.ttl_seconds,
        )
        faults: list[str] = []
        try:
            call, created = while_busy(
                lambda: self._calls.open_call(opened, now=now), deadline=deadline, what=f"opening call {call_sid}"
            )
        except StoreError:
            # The caller is answered all the same: the binding needs no record and `setup` creates the
            # call's. Should the store still be down then, the socket is refused or closed, and the action
            # callback (SessionStatus=failed) routes the caller to a person.
            log.exception("call %s: could not open its session; answering it with ConversationRelay anyway", call_sid)
            call, created = opened, True
            faults.append("open_call")
        if not created and call.handoff_payload and call.handoff_state in ("pending", "end_sent", "routed"):
            # The handed-off call came back through the handoff flow's TwiML Redirect widget
            # (the flow's incoming-call entry leads here): return it to that flow with its payload.
            log.info("call %s re-entered /voice after its handoff; returning it to the flow", call_sid)
            payload = HandoffPayload.from_json(call.handoff_payload)
            routing = self._routing_for(call_sid, call, payload, return_flow_sid=return_flow_sid)
            # Not while the `end` is still owed on a live socket: a replayed request must not mark such
            # a call routed (its frames would get silence and its `end` would never go out).
            if routing.target and call.handoff_state != "pending":
                self._best_effort(
                    lambda: self._calls.mark_routed(
                        call_sid, payload_json=payload.to_json(), target=routing.target, now=now
                    ),
                    deadline,
                    "mark_routed",
                    faults,
                )
            return Routing(routing.twiml, routing.target, store_faults=tuple(faults))
        log.info(
            "call %s from %s %s", call_sid, mask_phone(caller), "answered" if created else "answered again (retry)"
        )
        if call.binding_nonce and call.binding_expires_at > now + BINDING_MARGIN_SECONDS:
            # A retried webhook gets the same TwiML: only one of the two can be acted on.
            binding = self._bindings.issue(call_sid, nonce=call.binding_nonce, expires_at=call.binding_expires_at)
        else:
            binding = self._bindings.issue(call_sid)
        twiml = voice_twiml.connect_relay(
            action_url=action_url,
            options=self._routing.relay,
            parameters={"conversationId": call.conversation_id},
            binding=binding,
        )
        return Routing(twiml, store_faults=tuple(faults))

    def session_ended(self, end: SessionEnd, *, deadline: Deadline | None = None) -> Routing:
        faults: list[str] = []
        found = self._best_effort(
            lambda: self._calls.call_and_answer(end.call_sid, end.session_id), deadline, "read_call", faults
        )
        call, answered = found if found is not None else (None, None)
        if answered is not None and not _hung_up(end):
            log.warning("call %s: session %s ended before; giving the same answer again", end.call_sid, end.session_id)
            return Routing(answered.twiml, answered.target, repeated=True, store_faults=tuple(faults))
        if call is not None and call.session_id and end.session_id and call.session_id != end.session_id:
            return self._stale(end, faults)
        try:
            routing = self._decide(end, call, deadline, faults)
        except SessionAnswered as exc:  # a concurrent callback for the same session answered it first
            return Routing(exc.answer.twiml, exc.answer.target, repeated=True, store_faults=tuple(faults))
        except StaleSession:
            return self._stale(end, faults)
        return Routing(routing.twiml, routing.target, store_faults=tuple(faults))

    def _decide(
        self, end: SessionEnd, call: CallSession | None, deadline: Deadline | None, faults: list[str]
    ) -> Routing:
        now = int(self._clock())
        if _hung_up(end):
            if call is not None:
                self._best_effort(
                    lambda: self._calls.close_call(
                        end.call_sid, status="completed", now=now, session_id=end.session_id
                    ),
                    deadline,
                    "close_call",
                    faults,
                )
            return Routing(voice_twiml.empty())

        payload = self._handoff_payload(end, call)
        if payload is not None:
            return self._route(end, call, payload, now=now, deadline=deadline, faults=faults)
        if end.handoff_data:
            # HandoffData that is not a payload, and none stored: the agent did hand off.
            fresh, pointer = self._payload(call, "The AI agent handed off the call.", "agent_handoff", end, now)
            return self._route(end, call, fresh, now=now, deadline=deadline, faults=faults, transcript=pointer)
        if end.session_status == "ended":
            # The agent ended the session without a handoff: nothing is owed but a goodbye.
            return Routing(voice_twiml.say_and_hang_up(GOODBYE, self._routing.relay.language))

        reconnects = self._best_effort(
            lambda: self._calls.count_reconnect(end.call_sid, session_id=end.session_id),
            deadline,
            "count_reconnect",
            faults,
        )
        if reconnects is None:
            # A new socket could not be bound while DynamoDB refuses: a person rather than a retry.
            reason = f"The voice connection to the AI agent failed ({end.error_code or 'unknown error'})."
            fresh, pointer = self._payload(call, reason, "connection_failed", end, now)
            return self._route(end, call, fresh, now=now, deadline=deadline, faults=faults, transcript=pointer)
        if reconnects <= MAX_RECONNECTS:
            log.warning("call %s: relay session failed (%s); reconnecting", end.call_sid, end.error_code or "no code")
            parameters = {"conversationId": call.conversation_id} if call else {}
            routing = Routing(
                voice_twiml.connect_relay(
                    action_url=end.action_url,
                    options=self._routing.relay,
                    parameters=parameters,
                    binding=self._bindings.issue(end.call_sid),  # a fresh socket needs a fresh binding
                    greet=False,
                )
            )
            self._best_effort(
                lambda: self._calls.keep_session_answer(end.call_sid, end.session_id, SessionAnswer(routing.twiml)),
                deadline,
                "keep_answer",
                faults,
            )
            return routing
        reason = f"The voice connection to the AI agent failed ({end.error_code or 'unknown error'})."
        fresh, pointer = self._payload(call, reason, "connection_failed", end, now)
        return self._route(end, call, fresh, now=now, deadline=deadline, faults=faults, transcript=pointer)

    def _stale(self, end: SessionEnd, faults: list[str]) -> Routing:
        # Twilio posts each session's end once, and a call's next session starts only after that answer:
        # a callback for another session is a replay. Answering nothing leaves the live call as it is.
        log.warning(
            "security: action callback for call %s names session %s, which is not the call's current one; "
            "ignored (a replayed request?)",
            end.call_sid,
            end.session_id,
        )
        return Routing(voice_twiml.empty(), stale=True, store_faults=tuple(faults))

    def _route(
        self,
        end: SessionEnd,
        call: CallSession | None,
        payload: HandoffPayload,
        *,
        now: int,
        deadline: Deadline | None,
        faults: list[str],
        transcript: TranscriptPointer | None = None,
    ) -> Routing:
        """To a person: the TwiML first, from what the request and the call's record carry; then,
        best effort, the call marked routed (with this answer kept for the session's end), and the
        `transcript` pointer of a payload built here written with it."""
        routing = self._routing_for(end.call_sid, call, payload)
        if routing.target:
            self._best_effort(
                lambda: self._calls.mark_routed(
                    end.call_sid,
                    payload_json=payload.to_json(),
                    target=routing.target,
                    now=now,
                    transcript=transcript,
                    session_id=end.session_id,
                    answer=SessionAnswer(routing.twiml, routing.target),
                ),
                deadline,
                "mark_routed",
                faults,
            )
            log.info("call %s routed to a person via %s", end.call_sid, routing.target)
        return routing

    def _best_effort(
        self, operation: Callable[[], T], deadline: Deadline | None, step: str, faults: list[str]
    ) -> T | None:
        """`operation()`, sent again while DynamoDB is busy; None (and the step noted) if it still fails.

        StaleSession and SessionAnswered are answers, not faults: they reach the caller.
        """
        try:
            return while_busy(operation, deadline=deadline, what=step)
        except (StaleSession, SessionAnswered):
            raise
        except StoreError:
            log.exception("voice: %s failed; answering without it", step)
            faults.append(step)
            return None

    def _handoff_payload(self, end: SessionEnd, call: CallSession | None) -> HandoffPayload | None:
        if end.handoff_data:
            try:
                return HandoffPayload.from_json(end.handoff_data)
            except InvalidPayload:
                log.warning("call %s: HandoffData is not a HandoffPayload; using the stored handoff", end.call_sid)
        if call is not None and call.handoff_payload and call.handoff_state in ("pending", "end_sent", "routed"):
            return HandoffPayload.from_json(call.handoff_payload)
        return None

    def _routing_for(
        self, call_sid: str, call: CallSession | None, payload: HandoffPayload, *, return_flow_sid: str = ""
    ) -> Routing:
        """The TwiML that takes the call to a person; nothing is written."""
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


def _hung_up(end: SessionEnd) -> bool:
    """The call itself is over: whatever an earlier callback answered, only `<Response/>` is left to say."""
    return end.session_status == "completed" or end.call_status in ("completed", "canceled", "busy", "no-answer")
