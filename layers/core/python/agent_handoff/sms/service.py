"""The SMS conversation service: one inbound message in, at most one reply out.

Order of work, and why:
1. claim the MessageSid, so a Twilio retry neither calls the LLM again nor hands off twice;
   a retry that finds the first delivery failed (claim released, or its lease over) takes it;
2. load the conversation; while it is with a human, the AI stays silent;
3. run the agent turn, by the turn's deadline; a handoff is only decided in memory here;
4. commit conversation + reply + handoff record in one transaction. The handoff record's
   stream INSERT is the dispatch outbox, so the customer is told about a handoff only
   after it is durably recorded, and it cannot be recorded twice.

Two horizons: the model must be done in time for the reply to reach Twilio inside its window
(less the seconds kept for the commit); the commit, its retries and a duplicate's wait may use
the runtime's whole remaining time, since a committed reply is what a Twilio retry receives and
a committed handoff reaches a person either way.

The agent is asked at most once per message: when the commit loses a race (another message of
the same customer committed first), the decided turn is applied to the conversation as it now
is; when DynamoDB was only busy (a conflicting transaction, throttling), the same commit is sent
again after a pause, and after a lost answer (a read timeout) too, under the same idempotency
token. The claim and the reads are retried the same way, within Twilio's window.

Twilio does not retry a webhook that answered 5xx: a store that stays down through every retry
gets the texter an honest apology (nothing was recorded, so no person is promised) and the
operator a metric, never a 500.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from .. import log_context
from ..agent.turn import TRY_AGAIN, Agent, HandoffRequest, TurnOutcome
from ..deadline import Deadline
from ..errors import ConcurrentUpdate, StoreBusy, StoreError, StoreNoAnswer
from ..handoff import HandoffPayload, bounded_summary, build_payload, tool_result
from ..masking import mask_phone
from ..storage.records import Conversation, HandoffRecord, Hold, MessageClaim, TranscriptPointer, Turn, TurnCommit
from ..storage.session_store import SessionStore, conversation_key
from ..transcript_link import TranscriptLinks
from .twiml import MAX_SMS_CHARS

log = logging.getLogger(__name__)

CHANNEL = "SMS"
# Twilio waits 15 s for the answer, counted from before API Gateway (and a cold start) ran.
TWILIO_WINDOW_SECONDS = 15.0
WINDOW_MARGIN_SECONDS = 2.5
ANSWER_WITHIN_SECONDS = TWILIO_WINDOW_SECONDS - WINDOW_MARGIN_SECONDS
# Kept before the runtime's own timeout, to return the TwiML and flush the logs.
RUNTIME_RESERVE_SECONDS = 1.0
# Kept from the agent's turn for the commit, its retries, and the fallback's commit.
COMMIT_RESERVE_SECONDS = 2.5
# What must be left of the function's timeout besides one model call (checked at cold start).
FALLBACK_RESERVE_SECONDS = COMMIT_RESERVE_SECONDS + RUNTIME_RESERVE_SECONDS
# A claim's lease when the runtime's remaining time is unknown (scripts, tests).
CLAIM_LEASE_SECONDS = 30
POLL_SECONDS = 0.25
COMMIT_BACKOFF_SECONDS = 0.05
MAX_COMMIT_SENDS = 8
MAX_REBASES = 5
NOTICE_GAP = "\n\n"
# What a texter gets when the store stays down: no person is promised, since nothing was recorded.
STORE_DOWN_REPLY = TRY_AGAIN

T = TypeVar("T")


def webhook_deadline(context: Any) -> Deadline:
    """Until when this invocation may work: the runtime's remaining time less its reserve."""
    return Deadline.from_context(context, reserve_seconds=RUNTIME_RESERVE_SECONDS)


def claim_lease_seconds(context: Any) -> int:
    """How long this invocation can hold a claim: until the runtime stops it, whatever else happens."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    return math.ceil(remaining_ms() / 1000) + 1 if callable(remaining_ms) else CLAIM_LEASE_SECONDS


class InboundSms(NamedTuple):
    message_sid: str
    customer: str  # From
    agent_number: str  # To
    body: str


class SmsPolicy(NamedTuple):
    routing_attributes: dict
    memory_store_id: str
    history_limit: int
    session_ttl_seconds: int
    hold_seconds: int
    hold_message: str


class SmsReply(NamedTuple):
    text: str | None  # None: answer with an empty <Response/>
    duplicate: bool = False
    handed_off: bool = False
    handoff_id: str = ""
    trigger: str = ""
    conversation_id: str = ""
    on_hold: bool = False
    store_unavailable: bool = False  # the store stayed down: an apology, nothing recorded


class _Decided(NamedTuple):
    """The agent's answer to one message, kept so that a lost race does not ask the model again."""

    outcome: TurnOutcome
    handoff: HandoffRequest | None  # what the handoff tool was called with, if it was
    base_attempts: int  # the unresolved-attempt count the turn started from


class SmsService:
    def __init__(
        self,
        store: SessionStore,
        agent: Agent,
        policy: SmsPolicy,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        links: TranscriptLinks | None = None,
    ) -> None:
        self._store = store
        self._agent = agent
        self._policy = policy
        self._links = links
        self._clock = clock
        self._sleep = sleep

    def handle(
        self,
        message: InboundSms,
        *,
        deadline: Deadline | None = None,
        lease_seconds: int = CLAIM_LEASE_SECONDS,
        transcript_base_url: str = "",
    ) -> SmsReply:
        """Answer one webhook; `deadline` is the runtime's (without one: Twilio's window, on this service's clock).

        The model's turn ends in time for the reply to make Twilio's window, whatever the runtime allows.
        `transcript_base_url`: where the HTTP API serves /handoff/transcript, for a handoff's link.
        """
        if deadline is None:
            deadline = Deadline.after(ANSWER_WITHIN_SECONDS, clock=self._clock)
        answer_by = deadline.within(ANSWER_WITHIN_SECONDS)
        try:
            return self._handle(message, deadline, answer_by, lease_seconds, transcript_base_url)
        except StoreError as exc:
            log.error("the session store stayed unavailable; the texter gets an apology: %s", exc)
            return SmsReply(text=STORE_DOWN_REPLY, store_unavailable=True)

    def _handle(
        self, message: InboundSms, deadline: Deadline, answer_by: Deadline, lease_seconds: int, transcript_base_url: str
    ) -> SmsReply:
        token = uuid.uuid4().hex  # sent again with a retried claim, which then finds itself
        claim = self._patiently(
            lambda: self._store.claim_message(
                message.message_sid, now=int(self._clock()), lease_seconds=lease_seconds, token=token
            ),
            answer_by,
        )
        if claim.state in ("in_progress", "free"):
            claim = self._await_first_delivery(message.message_sid, deadline, lease_seconds)
        if claim.state == "done":
            return SmsReply(text=claim.reply or None, duplicate=True)
        if claim.state != "claimed":
            # The first delivery is still working and will answer it; a second answer would be a duplicate.
            return SmsReply(text=None, duplicate=True)
        try:
            return self._answer(message, claim.token, deadline, answer_by, transcript_base_url)
        except BaseException:
            try:
                self._store.release_message(message.message_sid, claim.token)
            except StoreError as exc:  # the claim's lease frees it for a retry anyway
                log.warning("the claim could not be released: %s", exc)
            raise

    def _patiently(self, call: Callable[[], T], deadline: Deadline) -> T:
        """A read or an idempotent write, tried again while DynamoDB is busy or its answer is lost, if time allows."""
        backoff = COMMIT_BACKOFF_SECONDS
        while True:
            try:
                return call()
            except (StoreBusy, StoreNoAnswer) as exc:
                pause = backoff * (1 + random.random())
                if deadline.remaining() <= pause:
                    raise
                log.info("store busy or unanswered (%s); trying again in %.2f s", exc, pause)
                self._sleep(pause)
                backoff = min(backoff * 2, 1.0)

    def _await_first_delivery(self, message_sid: str, deadline: Deadline, lease_seconds: int) -> MessageClaim:
        """A retry of a webhook another invocation claimed: its stored reply, or the claim once that one failed.

        Twilio retries when it stopped waiting for the first delivery, whose answer then reaches
        nobody: so wait for it to be stored and repeat it, and if the first delivery failed (it
        released its claim, or its lease is over so its runtime has ended) answer here instead.
        """
        until = deadline.within(deadline.remaining() - COMMIT_RESERVE_SECONDS)
        token = uuid.uuid4().hex
        while not until.expired():
            self._sleep(min(POLL_SECONDS, until.remaining()))
            claim = self._patiently(lambda: self._store.message_reply(message_sid), until)
            now = int(self._clock())
            if claim.state == "done":
                return claim
            if claim.state == "free" or claim.lease_until < now:
                log.info("the first delivery of this message failed; answering it here")
                claim = self._patiently(
                    lambda now=now: self._store.claim_message(
                        message_sid, now=now, lease_seconds=lease_seconds, token=token
                    ),
                    until,
                )
                if claim.state in ("claimed", "done"):
                    return claim
        return MessageClaim(state="in_progress")

    def _answer(
        self, message: InboundSms, token: str, deadline: Deadline, answer_by: Deadline, transcript_base_url: str = ""
    ) -> SmsReply:
        key = conversation_key(CHANNEL, message.customer, message.agent_number)
        turn_deadline = answer_by.within(answer_by.remaining() - COMMIT_RESERVE_SECONDS)
        decided: _Decided | None = None
        rebases = 0
        while True:
            now = int(self._clock())
            conversation, notice = self._patiently(lambda now=now: self._current(key, message, now), answer_by)
            log_context.bind(conversation_id=conversation.conversation_id)
            if conversation.hold is not None:
                commit, reply = self._held_turn(conversation, message, token)
            else:
                if decided is None:
                    decided = self._decide(conversation, message, turn_deadline)
                # Room for the notice before the reply, so that what is sent is what history keeps.
                room = MAX_SMS_CHARS - (len(notice) + len(NOTICE_GAP) if notice else 0)
                commit, reply = self._agent_turn(
                    conversation, message, token, decided, now, transcript_base_url, room=max(room, 0)
                )
            if notice and reply.text:
                # The hold ended because its handoff failed: this reply says first that nobody is coming.
                reply = reply._replace(text=f"{notice}{NOTICE_GAP}{reply.text}"[:MAX_SMS_CHARS])
                commit = commit._replace(reply=reply.text)
            try:
                self._commit(commit, now=now, deadline=deadline)
            except ConcurrentUpdate:
                rebases += 1
                if rebases > MAX_REBASES or deadline.expired():
                    raise
                log.info("conversation changed concurrently; applying this turn to its new state (%d)", rebases)
                continue
            return reply

    def _current(self, key: str, message: InboundSms, now: int) -> tuple[Conversation, str]:
        """The conversation as stored, or a new one; a hold that has ended gives the AI a fresh conversation.

        Also the ended hold's notice: set when it ended because its handoff failed.
        """
        conversation = self._store.load_conversation(key) or self._new_conversation(key, message)
        if conversation.hold is not None and not conversation.hold.active(now):
            fresh = self._new_conversation(key, message)._replace(
                version=conversation.version, history=conversation.history
            )
            return fresh, conversation.hold.notice
        return conversation, ""

    def _commit(self, commit: TurnCommit, *, now: int, deadline: Deadline) -> None:
        """Send the commit; while DynamoDB is only busy, or its answer was lost, send it again after a
        jittered pause, if time allows.

        A lost answer may hide a commit that was applied: it is sent again under the same
        idempotency token (a new one only after a cancellation, which applied nothing), and a
        repeat refused by its own conditions is checked against the stored reply before failing.
        """
        backoff = COMMIT_BACKOFF_SECONDS
        attempt = 0
        unanswered = False
        for send in range(1, MAX_COMMIT_SENDS + 1):
            try:
                self._store.commit_turn(commit, now=now, ttl_seconds=self._policy.session_ttl_seconds, attempt=attempt)
                return
            except (StoreBusy, StoreNoAnswer) as exc:
                if isinstance(exc, StoreBusy) and exc.cancelled:
                    attempt += 1
                unanswered = unanswered or isinstance(exc, StoreNoAnswer)
                # Jitter, so the two writers that conflicted do not meet again at the same moment.
                pause = backoff * (1 + random.random())
                if send == MAX_COMMIT_SENDS or deadline.remaining() <= pause:
                    raise
                log.info("store busy or unanswered (%s); sending the commit again in %.2f s", exc, pause)
                self._sleep(pause)
                backoff = min(backoff * 2, 1.0)
            except StoreError:
                if unanswered and self._landed(commit, deadline):
                    log.info("an unanswered send of this commit had been applied")
                    return
                raise

    def _landed(self, commit: TurnCommit, deadline: Deadline) -> bool:
        """Whether this webhook's reply is stored: only this claim's commit can have stored it
        (the claim's lease outlives this invocation)."""
        claim = self._patiently(lambda: self._store.message_reply(commit.message_sid), deadline)
        return claim.state == "done"

    def _decide(self, conversation: Conversation, message: InboundSms, deadline: Deadline) -> _Decided:
        requests: list[HandoffRequest] = []

        def on_handoff(request: HandoffRequest) -> dict[str, str]:
            requests[:] = [request]
            # Initiated, because the record is committed with the reply or the reply is never sent.
            return tool_result(CHANNEL)

        outcome = self._agent.take_turn(
            conversation.history,
            message.body,
            unresolved_attempts=conversation.unresolved_attempts,
            on_handoff=on_handoff,
            deadline=deadline,
        )
        return _Decided(outcome, requests[0] if requests else None, conversation.unresolved_attempts)

    def _held_turn(self, conversation: Conversation, message: InboundSms, token: str) -> tuple[TurnCommit, SmsReply]:
        held = conversation.with_turns(Turn("user", message.body), limit=self._policy.history_limit)
        text = self._policy.hold_message or None
        commit = TurnCommit(conversation=held, message_sid=message.message_sid, claim_token=token, reply=text)
        return commit, SmsReply(text=text, conversation_id=conversation.conversation_id, on_hold=True)

    def _agent_turn(
        self,
        conversation: Conversation,
        message: InboundSms,
        token: str,
        decided: _Decided,
        now: int,
        transcript_base_url: str,
        *,
        room: int = MAX_SMS_CHARS,
    ) -> tuple[TurnCommit, SmsReply]:
        """The decided turn applied to `conversation`, which may have moved on since the turn was decided.

        `room`: the characters left for the reply in one SMS.
        """
        outcome = decided.outcome
        text = outcome.reply[:room]  # what the customer receives is what history keeps
        if outcome.handed_off:
            attempts = 0
        else:
            # This turn's change to the count, on top of whatever a concurrent turn made of it.
            attempts = max(0, conversation.unresolved_attempts + outcome.unresolved_attempts - decided.base_attempts)
        updated = conversation.with_turns(
            Turn("user", message.body), Turn("assistant", text), limit=self._policy.history_limit
        )._replace(unresolved_attempts=attempts)
        handoff = transcript = None
        if outcome.handed_off and decided.handoff is not None:
            link = ""
            if self._links is not None:
                link = self._links.url(conversation.conversation_id, base_url=transcript_base_url, now=now)
            payload = build_payload(
                conversation_id=conversation.conversation_id,
                reason=decided.handoff.reason,
                routing_attributes=self._policy.routing_attributes,
                store_id=self._policy.memory_store_id,
                summary=decided.handoff.summary,
                transcript_url=link,
            )
            handoff = HandoffRecord(
                handoff_id=f"sms-{message.message_sid}",
                channel=CHANNEL.lower(),
                conversation_key=conversation.key,
                to=message.customer,
                from_=message.agent_number,
                payload_json=payload.to_json(),
            )
            updated = updated._replace(
                hold=Hold(handoff_id=handoff.handoff_id, reason=outcome.trigger, until=now + self._policy.hold_seconds),
            )
            if "transcriptUrl" in payload.attributes:
                transcript = self._pointer(conversation, payload, decided.handoff, now)
            log.info(
                "handing off conversation %s for %s (trigger %s)",
                conversation.conversation_id,
                mask_phone(message.customer),
                outcome.trigger,
            )
        commit = TurnCommit(
            conversation=updated,
            message_sid=message.message_sid,
            claim_token=token,
            reply=text,
            handoff=handoff,
            transcript=transcript,
        )
        return commit, SmsReply(
            text=text,
            handed_off=handoff is not None,
            handoff_id=handoff.handoff_id if handoff else "",
            trigger=outcome.trigger if handoff else "",
            conversation_id=conversation.conversation_id,
        )

    def _pointer(
        self, conversation: Conversation, payload: HandoffPayload, request: HandoffRequest, now: int
    ) -> TranscriptPointer:
        """What the payload's transcript link reads, committed with the handoff."""
        return TranscriptPointer(
            conversation_id=conversation.conversation_id,
            target_key=conversation.key,
            channel=CHANNEL.lower(),
            trigger=request.trigger,
            reason=payload.attributes["reason"],  # as sent: cleaned and bounded
            summary=bounded_summary(request.summary),  # whole: the page has no Flex limit
            handed_off_at=now,
            # As long as the conversation item lives (see SessionStore._conversation_put).
            expires_at=now + max(self._policy.session_ttl_seconds, self._policy.hold_seconds),
        )

    @staticmethod
    def _new_conversation(key: str, message: InboundSms) -> Conversation:
        return Conversation(
            key=key,
            conversation_id=f"conv_{uuid.uuid4().hex}",
            channel=CHANNEL.lower(),
            customer=message.customer,
            agent_number=message.agent_number,
        )
