"""A handoff that failed: dead-lettered, its hold lifted, its customer told, never silently.

The customer was told a person would follow up; when none will, they must not wait out the
hold in silence. In this order, each step safe to repeat:
1. the dead letter (with the reason), so the operator is alerted and can redrive;
2. the record marked failed, still owing its aftermath (its promise stays, due now);
3. the hold lifted, only if it is still this handoff's, with a notice the AI's next reply says;
4. one SMS to the customer, claimed on the record first, so at most one is ever sent;
5. the promise settled.
An invocation that dies between 2 and 5 leaves the promise due: the watchdog finishes steps 3-5.
Step 2 is written only by the holder of the record's lease: a dispatcher whose lease ran out
and was taken over gets ConcurrentUpdate there and does nothing more (its dead letter may then
be one of two for the handoff: redrive settles the second).
A redriven copy's hold names its original: lifting it matches either id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from ..deadline import Deadline
from ..masking import mask_phone
from ..storage.records import HandoffRecord
from ..storage.session_store import SessionStore
from .messages import TwilioMessages

log = logging.getLogger(__name__)

CustomerNotice = Literal["sent", "failed", "already", "off"]


class DeadLetters(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


class HandoffFailures:
    def __init__(
        self,
        store: SessionStore,
        dead_letters: DeadLetters,
        messages: Callable[[], TwilioMessages] | None,
        *,
        notice: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._dead_letters = dead_letters
        # A factory: most invocations never fail a handoff, so most never build the client.
        self._messages = messages
        self._notice = notice
        self._clock = clock

    def fail(self, record: HandoffRecord, outcome: str, detail: str, *, deadline: Deadline) -> CustomerNotice:
        now = int(self._clock())
        reason = f"{outcome}: {detail}"
        self._dead_letters.send(dead_letter(record, reason, now))
        self._store.finish_handoff(
            record.handoff_id,
            lease_token=record.lease_token,
            status="failed",
            outcome=outcome,
            error=detail,
            now=now,
            promise_due=now,
        )
        log.error("handoff %s failed and was dead-lettered: %s", record.handoff_id, reason)
        return self.aftermath(record, deadline=deadline)

    def aftermath(self, record: HandoffRecord, *, deadline: Deadline) -> CustomerNotice:
        """Steps 3-5: the AI answers again, the customer hears why, nothing more is owed."""
        now = int(self._clock())
        if record.conversation_key and self._store.lift_hold_after_failure(
            record.conversation_key, record.handoff_id, notice=self._notice, now=now, root_id=record.root_id
        ):
            log.info("hold of handoff %s lifted: the AI answers %s again", record.handoff_id, mask_phone(record.to))
        notice = self._tell_customer(record, deadline, now)
        self._store.settle_promise(record.handoff_id)
        return notice

    def _tell_customer(self, record: HandoffRecord, deadline: Deadline, now: int) -> CustomerNotice:
        if not self._notice or self._messages is None or not record.to or not record.from_:
            return "off"
        if not self._store.claim_customer_notice(record.handoff_id, now=now):
            return "already"
        try:
            result = self._messages().send(to=record.to, from_=record.from_, body=self._notice, deadline=deadline)
        except Exception as exc:  # best effort: the failure itself is recorded, a send must not undo that
            log.warning("could not tell %s that handoff %s failed: %s", mask_phone(record.to), record.handoff_id, exc)
            return "failed"
        if not result.sent:
            log.warning(
                "could not tell %s that handoff %s failed: %s", mask_phone(record.to), record.handoff_id, result.detail
            )
            return "failed"
        log.info("told %s that handoff %s failed (%s)", mask_phone(record.to), record.handoff_id, result.message_sid)
        return "sent"


def dead_letter(record: HandoffRecord, reason: str, now: int) -> dict[str, Any]:
    return {
        "type": "handoff.failed",
        "handoffId": record.handoff_id,
        "channel": record.channel,
        "reason": reason,
        "deliveries": record.deliveries,
        "failedAt": now,
        "createdAt": record.root_created_at,
        "to": record.to,
        "from": record.from_,
        "payload": record.payload_json,
    }
