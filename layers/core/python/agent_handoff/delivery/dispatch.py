"""Delivers digital handoffs to Studio: at least once, and never as two executions.

A handoff record moves pending -> dispatching (a lease) -> delivered | failed. Only the
holder of the lease posts to Studio; a redelivered stream record finds the record
delivered or failed and does nothing. Permanent failures, and records that keep failing
past their delivery budget, go to the dead-letter queue with their reason before the
record is marked failed, so a crash in between repeats the dead letter, never loses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..handoff import HandoffPayload
from ..masking import mask_phone
from ..storage.records import HandoffRecord
from ..storage.session_store import SessionStore
from .studio import ExecutionResult, StudioClient

log = logging.getLogger(__name__)

LEASE_SECONDS = 120  # longer than the dispatch function's timeout


class DeadLetters(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


class RetryLater(Exception):
    """Delivery failed for a reason that may pass; the event source should redeliver the record."""


@dataclass(frozen=True)
class DispatchOutcome:
    handoff_id: str
    status: str  # delivered | failed | skipped
    outcome: str  # created | already_active | permanent_error | gave_up | <status seen when skipped>
    execution_sid: str = ""
    latency_seconds: float = 0.0  # from the handoff's record to its outcome


class HandoffDispatcher:
    def __init__(
        self,
        store: SessionStore,
        studio: StudioClient,
        dead_letters: DeadLetters,
        *,
        flow_sid: str,
        max_deliveries: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._studio = studio
        self._dead_letters = dead_letters
        self._flow_sid = flow_sid
        self._max_deliveries = max_deliveries
        self._clock = clock

    def dispatch(self, handoff_id: str) -> DispatchOutcome:
        now = int(self._clock())
        record, owned = self._store.claim_handoff(handoff_id, now=now, lease_seconds=LEASE_SECONDS)
        if record is None:
            # A stream record for an item that was never written cannot be delivered; say so loudly.
            raise LookupError(f"handoff {handoff_id} does not exist")
        if not owned:
            if record.status == "dispatching":
                raise RetryLater(f"handoff {handoff_id} is being delivered by another invocation")
            return DispatchOutcome(handoff_id, "skipped", record.status, record.execution_sid)

        result = self._studio.start_execution(
            flow_sid=self._flow_sid, to=record.to, from_=record.from_, parameters=_studio_parameters(record)
        )
        return self._settle(record, result)

    def _settle(self, record: HandoffRecord, result: ExecutionResult) -> DispatchOutcome:
        now = int(self._clock())
        hid = record.handoff_id
        if result.kind in ("created", "already_active"):
            self._store.finish_handoff(
                hid,
                status="delivered",
                outcome=result.kind,
                execution_sid=result.execution_sid,
                error=result.detail,
                now=now,
            )
            log.info("handoff %s delivered to %s (%s)", hid, mask_phone(record.to), result.kind)
            return DispatchOutcome(hid, "delivered", result.kind, result.execution_sid, now - record.created_at)
        if result.kind == "transient" and record.deliveries < self._max_deliveries:
            self._store.release_handoff(hid, error=result.detail)
            raise RetryLater(f"handoff {hid}: {result.detail} (delivery {record.deliveries} of {self._max_deliveries})")
        outcome = "permanent_error" if result.kind == "permanent" else "gave_up"
        reason = f"{outcome}: {result.detail}"
        self._dead_letters.send(_dead_letter(record, reason, now))
        self._store.finish_handoff(hid, status="failed", outcome=outcome, error=result.detail, now=now)
        log.error("handoff %s failed and was dead-lettered: %s", hid, reason)
        return DispatchOutcome(hid, "failed", outcome, latency_seconds=now - record.created_at)


def _studio_parameters(record: HandoffRecord) -> str:
    return HandoffPayload.from_json(record.payload_json).studio_parameters()


def _dead_letter(record: HandoffRecord, reason: str, now: int) -> dict[str, Any]:
    return {
        "type": "handoff.failed",
        "handoffId": record.handoff_id,
        "channel": record.channel,
        "reason": reason,
        "deliveries": record.deliveries,
        "failedAt": now,
        "to": record.to,
        "from": record.from_,
        "payload": record.payload_json,
    }
