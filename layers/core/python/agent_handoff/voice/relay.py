"""The ConversationRelay side of a call: one WebSocket frame in, zero or more frames out.

API Gateway invokes the function once per frame, unordered, so everything a frame needs is
in DynamoDB: the connection's call, the turn counter, the pending handoff. A prompt claims
a turn; an interrupt moves past it; the prompt's frames go out only while the turn is known
current (speaker.py: the claim, one read, and the turn's closing write confirm it), so speech
the caller talked over is not sent. A handoff is stored before the caller hears about it, and an `end` carries it after the
final `text` with `last: true` (promises.py keeps that promise, across invocations if one dies).

A socket belongs to one call: `$connect` must present a binding issued with the call's TwiML
(binding.py), and `setup` must repeat it for the same CallSid, or the socket is closed. Twilio
sends `setup` once: if its write is lost (the invocation died), the call's next prompt, 0 or
interrupt binds the socket to the call its `$connect` binding proved; if the store refuses it,
the socket is closed, so that Twilio's action callback reconnects the call or routes it.
A turn runs against the invocation's deadline; what it has not finished by then is finished by
the fallback (apologise, store a handoff, `end`) in the reserve the handler kept back.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, NamedTuple

from .. import log_context
from ..agent.policy import Escalation
from ..agent.summary import conversation_summary
from ..agent.turn import AGENT_TROUBLE, Agent, HandoffRequest
from ..deadline import Deadline
from ..errors import ConcurrentUpdate, StoreError
from ..handoff import HandoffPayload, bounded_summary, build_payload, tool_result
from ..masking import mask_phone
from ..signing import InvalidToken
from ..storage.call_store import CALL_TTL_SECONDS, CallSession, CallStore, ConnectionRecord, call_key
from ..storage.records import TranscriptPointer, Turn
from ..storage.retry import while_busy
from ..transcript_link import TranscriptLinks
from .binding import PARAMETER as BINDING_PARAMETER
from .binding import RelayBindings, binding_id
from .promises import EndOutcome, EndPromises, FrameSender
from .protocol import End, Error, Info, Interrupt, OutboundMessage, Prompt, ProtocolError, Setup, Text, parse_inbound
from .speaker import Speaker

log = logging.getLogger(__name__)

CHANNEL = "VOICE"
SETUP_GRACE_SECONDS = 1.5
PRESSED_ZERO = Escalation("dtmf_zero", "The caller pressed 0 to speak with a person.")
TROUBLE_REASON = "The AI agent hit a technical problem during the call."
OVERRAN_REASON = "The AI agent took too long to answer during the call."
TROUBLE_LINE = f"{AGENT_TROUBLE} Let me connect you with a person."
# After the storing invocation's deadline, its reserve and a margin, that invocation has either
# posted the handoff's `end` or is dead: the `end` is overdue and the watchdog may post it.
PROMISE_GRACE_SECONDS = 10
# Between the agent's deadline and the turn's: a model stopped at its deadline leaves the agent
# this long to store its handoff and post its apology and `end` (tens of milliseconds in a region).
WRAP_UP_SECONDS = 0.5
# Turns at once in one container: one in Lambda, and a few abandoned ones finishing; more locally.
TURN_THREADS = 64
# Kept back by the handler from each frame's turn for its fallback (apologise, store a handoff, post
# text and end): three DynamoDB writes and two posts, measured at 37 ms p50 and 108 ms at worst
# against moto and a loopback endpoint, some hundreds of ms at p99 in a region: 2 s leaves room for
# a throttled retry. With one model call it must fit the function's Timeout (checked at cold start).
FALLBACK_RESERVE_SECONDS = 2.0

__all__ = ["ConnectResult", "FrameResult", "FrameSender", "RelayPolicy", "VoiceRelay"]


class FrameResult(NamedTuple):
    """What a frame did, for the handler's logs and metrics."""

    type: str  # the message type, or "dropped"
    call_sid: str = ""
    handoff_trigger: str = ""  # set when this frame handed the caller off
    end: str = ""  # what became of an `end` this frame posted or tried to (promises.EndOutcome)
    refused: str = ""  # why a setup was refused and its socket closed
    store_fault: str = ""  # the step DynamoDB failed (past retries) and the socket was closed for


class ConnectResult(NamedTuple):
    accepted: bool
    reason: str = ""  # why not: missing, malformed, signature, expired, too_far_ahead, replayed
    call_sid: str = ""


class RelayPolicy(NamedTuple):
    account_sid: str | None
    routing_attributes: dict
    memory_store_id: str
    history_limit: int
    transcript_base_url: str = ""  # where GET /handoff/transcript is served, for the handoff's link
    welcome_greeting: str = ""  # what the TwiML has Twilio say first: an interrupt of it is no turn's


class _TurnOverran(Exception):
    """The turn did not finish before the invocation's deadline."""


class VoiceRelay:
    def __init__(
        self,
        calls: CallStore,
        agent: Agent,
        policy: RelayPolicy,
        bindings: RelayBindings,
        promises: EndPromises | None = None,
        links: TranscriptLinks | None = None,
    ) -> None:
        self._calls = calls
        self._agent = agent
        self._policy = policy
        self._bindings = bindings
        self._links = links
        self._promises = promises or EndPromises(calls)
        # connection -> call is fixed for a connection's life; a warm container skips the lookup.
        self._call_of: OrderedDict[str, str] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None

    # -- $connect -----------------------------------------------------------------------

    def connect(self, connection_id: str, token: str | None, *, at: float, now: int) -> ConnectResult:
        """Accept a signed handshake only with a valid binding no other connection has presented.

        `at`: when API Gateway received the handshake (its requestTimeEpoch), the binding's clock.
        """
        if token is None:
            return ConnectResult(False, "missing")
        try:
            claims = self._bindings.verify(token, at=at)
        except InvalidToken as refused:
            return ConnectResult(False, refused.reason)
        if not self._calls.claim_binding(
            binding_id=binding_id(token),
            call_sid=claims.subject,
            connection_id=connection_id,
            expires_at=claims.expires_at,
            now=now,
        ):
            return ConnectResult(False, "replayed", claims.subject)
        return ConnectResult(True, call_sid=claims.subject)

    # -- frames -------------------------------------------------------------------------

    def handle(
        self,
        connection_id: str,
        body: str | None,
        sender: FrameSender,
        *,
        now: int,
        deadline: Deadline | None = None,
        endpoint: str = "",
    ) -> FrameResult:
        """`endpoint`: the @connections endpoint of this connection, kept on the call for the watchdog."""
        try:
            message = parse_inbound(body)
        except ProtocolError as exc:
            # Answering a bad frame with a frame could only add an invalid one: log and drop it.
            log.warning("dropped frame on %s: %s", connection_id, exc)
            return FrameResult("dropped")
        if isinstance(message, Setup):
            return self._on_setup(connection_id, message, sender, now=now, endpoint=endpoint, deadline=deadline)
        if isinstance(message, Prompt) and not message.last:
            return FrameResult(message.type, self._call_of.get(connection_id, ""))  # partial transcripts
        if isinstance(message, Prompt):
            return self._on_prompt(connection_id, message.voice_prompt, sender, deadline, endpoint=endpoint)
        if message.type == "dtmf" and message.digit == "0":
            return self._on_prompt(
                connection_id, "(pressed 0)", sender, deadline, forced=PRESSED_ZERO, endpoint=endpoint
            )
        return self._on_other(connection_id, message, sender, deadline, endpoint=endpoint)

    def resend_pending_end(self, call: CallSession, sender: FrameSender) -> EndOutcome:
        """For the watchdog: post an overdue call's stored `end` (see promises.EndPromises)."""
        return self._promises.resend_pending_end(call, sender)

    def _on_setup(
        self,
        connection_id: str,
        setup: Setup,
        sender: FrameSender,
        *,
        now: int,
        endpoint: str,
        deadline: Deadline | None = None,
    ) -> FrameResult:
        token = setup.custom_parameters.get(BINDING_PARAMETER)
        if self._policy.account_sid and setup.account_sid != self._policy.account_sid:
            return self._refuse_setup(connection_id, setup, sender, "other_account")
        if not isinstance(token, str) or not token:
            return self._refuse_setup(connection_id, setup, sender, "no_binding")
        conversation_id = str(setup.custom_parameters.get("conversationId") or f"conv_{uuid.uuid4().hex}")
        try:
            # Twilio sends `setup` once: a throttled write is sent again rather than lost.
            bound = while_busy(
                lambda: self._calls.bind_connection(
                    call_sid=setup.call_sid,
                    connection_id=connection_id,
                    binding_id=binding_id(token),
                    session_id=setup.session_id,
                    caller=setup.from_,
                    agent_number=setup.to,
                    account_sid=setup.account_sid,
                    conversation_id=conversation_id[:128],
                    endpoint=endpoint,
                    now=now,
                ),
                deadline=deadline,
                what=f"setup of call {setup.call_sid}",
            )
        except StoreError:
            return self._close_unbound(connection_id, sender, setup.call_sid, "setup")
        if not bound:
            return self._refuse_setup(connection_id, setup, sender, "binding_mismatch")
        self._remember(connection_id, setup.call_sid)
        log.info("call %s bound to connection %s (caller %s)", setup.call_sid, connection_id, mask_phone(setup.from_))
        return FrameResult("setup", setup.call_sid)

    def _refuse_setup(self, connection_id: str, setup: Setup, sender: FrameSender, reason: str) -> FrameResult:
        # The claimed CallSid is logged (not a secret); the binding never is.
        log.warning(
            "security: setup refused on connection %s naming call %s (%s); closing the socket",
            connection_id,
            setup.call_sid,
            reason,
        )
        if not sender.close():
            try:
                # The socket may stay open: no later frame may bind it through its `$connect` either.
                self._calls.refuse_connection(connection_id, reason)
            except StoreError:
                log.exception("could not record the refusal of connection %s", connection_id)
        return FrameResult("setup", refused=reason)

    def _close_unbound(self, connection_id: str, sender: FrameSender, call_sid: str, step: str) -> FrameResult:
        """The socket could not be tied to its call: closing it makes Twilio post the action callback
        (SessionStatus=failed), which reconnects the call or routes it to a person."""
        log.exception(
            "call %s: %s on connection %s could not be stored; closing the socket", call_sid, step, connection_id
        )
        sender.close()
        return FrameResult("dropped", call_sid, store_fault=step)

    def _on_prompt(
        self,
        connection_id: str,
        text: str,
        sender: FrameSender,
        deadline: Deadline | None,
        *,
        forced: Escalation | None = None,
        endpoint: str = "",
    ) -> FrameResult:
        call_sid = self._call_sid(connection_id, deadline, sender=sender, endpoint=endpoint)
        if isinstance(call_sid, FrameResult):
            return call_sid
        if call_sid is None:
            log.warning("prompt before setup, or for an unknown connection %s: dropped", connection_id)
            return FrameResult("dropped")
        try:
            call = self._calls.start_turn(call_sid, connection_id, text)
        except ConcurrentUpdate:
            log.warning("prompt on %s, which no longer carries call %s: dropped", connection_id, call_sid)
            return FrameResult("dropped", call_sid)
        claimed_at = time.monotonic()
        if call.handoff_state == "pending":
            # A turn promised a person and died before its `end` went out: send it now, nothing else.
            end = self._promises.keep(call_sid, connection_id, sender, deadline=deadline)
            return FrameResult("prompt", call_sid, end=end)
        if call.handoff_state:
            log.info("call %s is being handed off; the AI stays silent", call_sid)
            return FrameResult("prompt", call_sid)
        try:
            trigger, end = self._bounded_turn(call, text, sender, forced, claimed_at, deadline)
        except _TurnOverran:
            log.error("voice turn on call %s ran out of time; handing the caller to a person", call_sid)
            trigger = "agent_timeout"
            end = self._fallback(call, connection_id, sender, deadline, OVERRAN_REASON, trigger)
        except Exception:
            log.exception("voice turn failed on call %s; handing the caller to a person", call_sid)
            trigger = "agent_error"
            end = self._fallback(call, connection_id, sender, deadline, TROUBLE_REASON, trigger)
        return FrameResult("prompt", call_sid, trigger, end)

    def _on_other(
        self, connection_id: str, message: Any, sender: FrameSender, deadline: Deadline | None, *, endpoint: str = ""
    ) -> FrameResult:
        """interrupt, error, info and digits other than 0: first, an `end` still owed goes out."""
        if isinstance(message, Error):
            log.warning("ConversationRelay reported an error on %s: %s", connection_id, message.description)
        elif isinstance(message, Info):
            log.info("ConversationRelay info on %s: %s", connection_id, message.name)
        elif not isinstance(message, Interrupt):
            log.info("ignored DTMF %s on %s", message.digit, connection_id)
        call_sid = self._call_sid(
            connection_id, deadline, wait=isinstance(message, Interrupt), sender=sender, endpoint=endpoint
        )
        if isinstance(call_sid, FrameResult):
            return call_sid
        if call_sid is None:
            if isinstance(message, Interrupt):
                log.warning("interrupt for an unknown connection %s: dropped", connection_id)
            return FrameResult(message.type)
        call = self._calls.get_call(call_sid)
        if call is None or call.connection_id != connection_id:
            return FrameResult(message.type, call_sid)
        late = False
        if isinstance(message, Interrupt):
            try:
                turn_after = self._calls.record_interrupt(
                    call_sid,
                    message.utterance_until_interrupt,
                    history_limit=self._policy.history_limit,
                    call=call,
                    greeting=self._policy.welcome_greeting,
                )
            except StoreError:
                if call.handoff_state != "pending":
                    raise
                log.warning("call %s: the interrupt could not be recorded; the `end` owed goes first", call_sid)
                turn_after = None
            late = turn_after == call.turn  # of an earlier answer or the greeting: the current turn goes on
        end = ""
        if call.handoff_state == "pending" and not late:
            # A turn that stored a handoff and died before its `end`. (A late interrupt leaves it to
            # the turn, which may be alive and saying its goodbye: the `end` must not cut in ahead.)
            end = self._promises.keep(call_sid, connection_id, sender, deadline=deadline)
        return FrameResult(message.type, call_sid, end=end)

    # -- a turn -------------------------------------------------------------------------

    def _bounded_turn(
        self, call: CallSession, text, sender, forced, claimed_at: float, deadline: Deadline | None
    ) -> tuple[str, str]:
        """Run the turn on a worker thread when there is a deadline: at the deadline the turn is
        abandoned (it posts and stores nothing more) and the caller gets the fallback.

        The agent's own deadline comes WRAP_UP_SECONDS earlier, so a model that stops on time
        still lets the agent say its own apology and post its `end` before the fallback would.
        """
        if deadline is None:
            return self._run_turn(call, text, sender, forced, claimed_at, None, threading.Event())
        abandoned = threading.Event()
        agent_deadline = deadline.within(deadline.remaining() - WRAP_UP_SECONDS)
        turn = self._workers().submit(
            contextvars.copy_context().run,
            self._run_turn,
            call,
            text,
            sender,
            forced,
            claimed_at,
            agent_deadline,
            abandoned,
        )
        if not wait([turn], timeout=deadline.remaining()).done:
            abandoned.set()
            raise _TurnOverran()
        return turn.result()  # the turn's own exception, if it raised one, is raised here

    def _workers(self) -> ThreadPoolExecutor:
        # Kept for the container's turns: a thread started per turn cost a thread start, and the
        # handshake Thread.start waits for, before every model request. An abandoned turn keeps its
        # thread until it ends; the pool grows past it.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=TURN_THREADS, thread_name_prefix="voice-turn")
        return self._pool

    def _run_turn(
        self,
        call: CallSession,
        text: str,
        sender: FrameSender,
        forced: Escalation | None,
        claimed_at: float,
        deadline: Deadline | None,
        abandoned: threading.Event,
    ) -> tuple[str, str]:
        """Returns the trigger of the handoff this turn made (or "") and what became of its `end`."""
        call_sid = call.call_sid

        ended = threading.Event()  # another frame's `end` already went out: this session says nothing more

        def on_handoff(request: HandoffRequest) -> dict[str, str]:
            if abandoned.is_set():
                return tool_result(CHANNEL, error="the turn ran out of time")
            payload = self._payload(call.conversation_id, request.reason, request.summary)
            # The payload's reason, not the model's: it has had card numbers redacted and been bounded.
            stored_reason = payload.attributes["reason"]
            if self._calls.store_handoff(
                call_sid,
                payload_json=payload.to_json(),
                reason=stored_reason,
                due=_due(deadline),
                transcript=self._pointer(call, payload, request),
            ):
                return tool_result(CHANNEL)
            # Another frame of this call stored its handoff first (the caller said "agent" and pressed 0
            # at once): a person is coming all the same. This turn says so and keeps that handoff's
            # promise, since the frame that stored it may have died before its `end`.
            state = self._calls.get_call(call_sid)
            state = state.handoff_state if state is not None else ""
            if state in ("end_sent", "routed"):
                ended.set()
            if state in ("pending", "end_sent", "routed"):
                log.info("call %s: a handoff was already stored by another frame; keeping it", call_sid)
                return tool_result(CHANNEL)
            return tool_result(CHANNEL, error="a handoff is already under way for this call")

        def send(message: OutboundMessage) -> bool:
            return not abandoned.is_set() and not ended.is_set() and sender.send(message)

        # Claiming the turn confirmed it current: frames that follow at once need no read (speaker.py
        # says how a turn is confirmed with three DynamoDB calls at most).
        speaker = Speaker(
            send, lambda opening: self._calls.confirm_speaking(call_sid, call.turn, opening), confirmed_at=claimed_at
        )
        outcome = self._agent.take_turn(
            call.history[:-1],
            text,
            unresolved_attempts=call.unresolved_attempts,
            on_handoff=on_handoff,
            escalation=forced,
            speak=speaker.feed,
            deadline=deadline,
        )
        if abandoned.is_set():
            return "", ""

        def commit() -> bool:
            # The turn's closing write, conditional on the turn: it also tells the speaker whether
            # an interrupt overtook the turn, so the reply's last frame costs no read of its own.
            return not abandoned.is_set() and self._calls.finish_turn(
                call,
                Turn("assistant", outcome.reply),
                unresolved_attempts=outcome.unresolved_attempts,
                history_limit=self._policy.history_limit,
            )

        if not speaker.finish(commit):
            log.info("turn %d of call %s was interrupted or a post failed", call.turn, call_sid)
            if speaker.post_failed and not abandoned.is_set():
                self._store_as_said(call, outcome, speaker)
        if not outcome.handed_off or abandoned.is_set():
            return "", ""
        # Even if the caller talked over the goodbye: they asked for a person and get one.
        return outcome.trigger, self._promises.keep(call_sid, call.connection_id, sender, deadline=deadline)

    def _store_as_said(self, call: CallSession, outcome: Any, speaker: Speaker) -> None:
        """A frame failed: the history says only what went out, as a reply the caller was cut off from."""
        limit = self._policy.history_limit
        try:
            if speaker.committed:  # stored whole by the closing write, then its last frame failed
                self._calls.keep_only_said(call, outcome.reply, speaker.said, history_limit=limit)
            elif speaker.said.strip():  # failed before the closing write: store what did go out
                said = Turn("assistant", speaker.said.strip(), interrupted=True)
                self._calls.finish_turn(
                    call, said, unresolved_attempts=outcome.unresolved_attempts, history_limit=limit
                )
        except StoreError:
            log.warning("call %s: what the caller heard of turn %d could not be stored", call.call_sid, call.turn)

    def _fallback(
        self,
        call: CallSession,
        connection_id: str,
        sender: FrameSender,
        deadline: Deadline | None,
        reason: str,
        trigger: str,
    ) -> str:
        """Apologise, store a handoff and send its `end`: what a turn that failed or ran out of time owes."""
        hurry = getattr(sender, "hurry", None)
        if hurry is not None:
            hurry()  # the posts must fit the reserve: a slow one fails fast, and the `end` stays owed
        request = HandoffRequest(reason, conversation_summary(call.history, channel=CHANNEL), trigger)
        payload = self._payload(call.conversation_id, reason, request.summary)
        try:
            stored = self._calls.store_handoff(
                call.call_sid,
                payload_json=payload.to_json(),
                reason=payload.attributes["reason"],
                due=_due(None),
                transcript=self._pointer(call, payload, request),
            )
        except StoreError:
            # The store is down: the caller still hears why and gets an `end` built here.
            log.exception("could not store the fallback handoff for call %s", call.call_sid)
            sender.send(Text(token=TROUBLE_LINE, last=True))
            return "sent" if sender.send(End(handoff_data=payload.to_json())) else "failed"
        # Not stored: the turn had stored its own first, which is owed if still pending (its goodbye
        # may not have been said: the apology is said again rather than not at all).
        if stored or self._calls.get_call(call.call_sid).handoff_state == "pending":
            sender.send(Text(token=TROUBLE_LINE, last=True))
        return self._promises.keep(call.call_sid, connection_id, sender, deadline=deadline)

    # -- helpers ------------------------------------------------------------------------

    def _payload(self, conversation_id: str, reason: str, summary: str) -> HandoffPayload:
        link = ""
        if self._links is not None:
            link = self._links.url(conversation_id, base_url=self._policy.transcript_base_url, now=time.time())
        return build_payload(
            conversation_id=conversation_id,
            reason=reason,
            routing_attributes=self._policy.routing_attributes,
            store_id=self._policy.memory_store_id,
            summary=summary,
            transcript_url=link,
        )

    @staticmethod
    def _pointer(call: CallSession, payload: HandoffPayload, request: HandoffRequest) -> TranscriptPointer | None:
        """What the payload's transcript link reads, written with the handoff; none without a link."""
        if "transcriptUrl" not in payload.attributes:
            return None
        now = int(time.time())
        return TranscriptPointer(
            conversation_id=call.conversation_id,
            target_key=call_key(call.call_sid),
            channel="voice",
            trigger=request.trigger,
            reason=payload.attributes["reason"],
            summary=bounded_summary(request.summary),
            handed_off_at=now,
            expires_at=now + CALL_TTL_SECONDS,  # as long as the call item (bound at setup for as long)
        )

    def _call_sid(
        self,
        connection_id: str,
        deadline: Deadline | None,
        *,
        wait: bool = True,
        sender: FrameSender | None = None,
        endpoint: str = "",
    ) -> str | FrameResult | None:
        """The connection's call; None if it has none; a FrameResult if the socket had to be closed.

        `wait`: give a `setup` still being stored its grace, then bind the socket without it.
        """
        call_sid = self._call_of.get(connection_id)
        if call_sid:
            log_context.bind(call_sid=call_sid)
        grace = Deadline.after(SETUP_GRACE_SECONDS if wait else 0)
        if deadline is not None:
            grace = deadline.within(grace.remaining())
        while call_sid is None:
            call_sid = self._calls.call_for_connection(connection_id)
            if call_sid:
                self._remember(connection_id, call_sid)
            elif grace.expired():
                if not wait or sender is None:
                    return None
                return self._bind_without_setup(connection_id, sender, endpoint, deadline)
            else:
                # Frames are separate invocations: this one may have overtaken the setup still being stored.
                time.sleep(0.1)
        return call_sid

    def _bind_without_setup(
        self, connection_id: str, sender: FrameSender, endpoint: str, deadline: Deadline | None
    ) -> str | FrameResult | None:
        """A frame of a socket whose `setup` never landed: bind it to the call its `$connect` proved.

        Twilio sends `setup` once, so without this a lost write would leave the caller unanswered
        (0 included) on an open socket. It is no way around `setup`'s check: only the CallSid the
        socket's own binding named at `$connect` is bound, never one a frame names; only while that
        call has no socket (a spare binding of a live call takes nothing); never a socket whose
        `setup` was refused. What only `setup` carries is filled safely (see CallStore.bind_lazily).
        """
        proved: ConnectionRecord | None = None
        try:
            proved = self._calls.connection(connection_id)
            if proved is None or not proved.binding_call_sid or proved.refused:
                return None
            if proved.call_sid:  # its setup landed a moment ago
                self._remember(connection_id, proved.call_sid)
                return proved.call_sid
            bound = while_busy(
                lambda: self._bind_lazily(connection_id, proved, endpoint),
                deadline=deadline,
                what=f"binding connection {connection_id} without its setup",
            )
        except StoreError:
            named = proved.binding_call_sid if proved is not None else ""
            return self._close_unbound(connection_id, sender, named, "bind_without_setup")
        if bound:
            log.warning(
                "call %s: no setup landed for connection %s; bound it through its $connect binding",
                proved.binding_call_sid,
                connection_id,
            )
            self._remember(connection_id, proved.binding_call_sid)
            return proved.binding_call_sid
        call_sid = self._calls.call_for_connection(connection_id)  # a setup bound it (or refused it) meanwhile
        if call_sid:
            self._remember(connection_id, call_sid)
        return call_sid

    def _bind_lazily(self, connection_id: str, proved: ConnectionRecord, endpoint: str) -> bool:
        return self._calls.bind_lazily(
            connection=connection_id,
            proved=proved,
            endpoint=endpoint,
            conversation_id=f"conv_{uuid.uuid4().hex}",
            now=int(time.time()),
        )

    def _remember(self, connection_id: str, call_sid: str) -> None:
        log_context.bind(call_sid=call_sid)
        self._call_of[connection_id] = call_sid
        self._call_of.move_to_end(connection_id)
        while len(self._call_of) > 1024:
            self._call_of.popitem(last=False)


def _due(deadline: Deadline | None) -> int:
    """When the `end` of a handoff stored now is overdue: after this invocation's deadline and its reserve."""
    remaining = deadline.remaining() if deadline is not None else 0.0
    return int(time.time() + remaining) + PROMISE_GRACE_SECONDS
