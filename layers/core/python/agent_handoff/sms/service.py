"""The SMS conversation service: one inbound message in, at most one reply out.

Order of work, and why:
1. claim the MessageSid, so a Twilio retry neither calls the LLM again nor hands off twice;
2. load the conversation; while it is with a human, the AI stays silent;
3. run the agent turn; a handoff is only built in memory here;
4. commit conversation + reply + handoff record in one transaction. The handoff record's
   stream INSERT is the dispatch outbox, so the customer is told about a handoff only
   after it is durably recorded, and it cannot be recorded twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

from .. import log_context
from ..agent.turn import Agent
from ..errors import ConcurrentUpdate
from ..handoff import build_payload, tool_result
from ..masking import mask_phone
from ..storage.records import Conversation, HandoffRecord, Hold, Turn, TurnCommit
from ..storage.session_store import SessionStore, conversation_key

log = logging.getLogger(__name__)

CHANNEL = "SMS"
CLAIM_LEASE_SECONDS = 30  # longer than a whole turn may take (the webhook itself gives up at 15 s)
COMMIT_ATTEMPTS = 3


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
    # How long a duplicate webhook waits for the first one's reply before answering empty.
    duplicate_wait_seconds: float = 5.0


class SmsReply(NamedTuple):
    text: str | None  # None: answer with an empty <Response/>
    duplicate: bool = False
    handed_off: bool = False
    handoff_id: str = ""
    trigger: str = ""
    conversation_id: str = ""
    on_hold: bool = False


class SmsService:
    def __init__(
        self,
        store: SessionStore,
        agent: Agent,
        policy: SmsPolicy,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._agent = agent
        self._policy = policy
        self._clock = clock
        self._sleep = sleep

    def handle(self, message: InboundSms) -> SmsReply:
        now = int(self._clock())
        claim = self._store.claim_message(message.message_sid, now=now, lease_seconds=CLAIM_LEASE_SECONDS)
        if claim.state == "done":
            return SmsReply(text=claim.reply or None, duplicate=True)
        if claim.state == "in_progress":
            return self._await_first_reply(message.message_sid)
        try:
            return self._answer(message, claim.token)
        except BaseException:
            self._store.release_message(message.message_sid, claim.token)
            raise

    def _await_first_reply(self, message_sid: str) -> SmsReply:
        deadline = self._clock() + self._policy.duplicate_wait_seconds
        while self._clock() < deadline:
            self._sleep(0.25)
            claim = self._store.message_reply(message_sid)
            if claim.state == "done":
                return SmsReply(text=claim.reply or None, duplicate=True)
        # The first delivery is still working and will answer it; a second answer would be a duplicate.
        return SmsReply(text=None, duplicate=True)

    def _answer(self, message: InboundSms, token: str) -> SmsReply:
        key = conversation_key(CHANNEL, message.customer, message.agent_number)
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            now = int(self._clock())
            conversation = self._store.load_conversation(key) or self._new_conversation(key, message)
            log_context.bind(conversation_id=conversation.conversation_id)
            notice = ""
            if conversation.hold is not None and not conversation.hold.active(now):
                # Set when the hold ended because its handoff failed: this reply says nobody is coming.
                notice = conversation.hold.notice
                # The human side is done with it: a fresh conversation for the AI.
                conversation = self._new_conversation(key, message)._replace(
                    version=conversation.version, history=conversation.history
                )
            commit, reply = self._turn(conversation, message, token, now)
            if notice and reply.text:
                reply = reply._replace(text=f"{notice}\n\n{reply.text}")
                commit = commit._replace(reply=reply.text)
            try:
                self._store.commit_turn(commit, now=now, ttl_seconds=self._policy.session_ttl_seconds)
            except ConcurrentUpdate:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                log.info("conversation changed concurrently, retrying turn (attempt %d)", attempt)
                continue
            return reply
        raise AssertionError("unreachable")

    def _turn(
        self, conversation: Conversation, message: InboundSms, token: str, now: int
    ) -> tuple[TurnCommit, SmsReply]:
        limit = self._policy.history_limit
        if conversation.hold is not None:
            held = conversation.with_turns(Turn("user", message.body), limit=limit)
            text = self._policy.hold_message or None
            commit = TurnCommit(conversation=held, message_sid=message.message_sid, claim_token=token, reply=text)
            return commit, SmsReply(text=text, conversation_id=conversation.conversation_id, on_hold=True)

        pending: list[HandoffRecord] = []

        def on_handoff(reason: str) -> dict[str, str]:
            payload = build_payload(
                conversation_id=conversation.conversation_id,
                reason=reason,
                routing_attributes=self._policy.routing_attributes,
                store_id=self._policy.memory_store_id,
            )
            pending[:] = [
                HandoffRecord(
                    handoff_id=f"sms-{message.message_sid}",
                    channel=CHANNEL.lower(),
                    conversation_key=conversation.key,
                    to=message.customer,
                    from_=message.agent_number,
                    payload_json=payload.to_json(),
                )
            ]
            # Initiated, because the record is committed with the reply or the reply is never sent.
            return tool_result(CHANNEL)

        outcome = self._agent.take_turn(
            conversation.history,
            message.body,
            unresolved_attempts=conversation.unresolved_attempts,
            on_handoff=on_handoff,
        )
        updated = conversation.with_turns(
            Turn("user", message.body), Turn("assistant", outcome.reply), limit=limit
        )._replace(unresolved_attempts=outcome.unresolved_attempts)
        handoff = pending[0] if outcome.handed_off and pending else None
        if handoff is not None:
            updated = updated._replace(
                hold=Hold(handoff_id=handoff.handoff_id, reason=outcome.trigger, until=now + self._policy.hold_seconds),
            )
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
            reply=outcome.reply,
            handoff=handoff,
        )
        return commit, SmsReply(
            text=outcome.reply,
            handed_off=handoff is not None,
            handoff_id=handoff.handoff_id if handoff else "",
            trigger=outcome.trigger if handoff else "",
            conversation_id=conversation.conversation_id,
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
