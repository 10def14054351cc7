"""Delivers digital handoffs to Studio: at least once, never as two executions, within a deadline.

A handoff record moves pending -> dispatching (a lease) -> delivered | failed | superseded.
Only the holder of the lease posts to Studio and records the outcome (the writes are conditional
on its lease token); a redelivered stream record finds the record settled and does nothing.
Permanent failures, and records that keep failing past their delivery budget, go to the
dead-letter queue with their reason before the record is marked failed (see `failure`), so a
crash in between repeats the dead letter, never loses it.

Studio has no idempotency key, so a POST whose answer was lost may have started an execution.
Such a record is marked `maybe_sent` (as is one taken over from a dispatcher that died holding
it), and before it is posted again or failed, Studio is asked for an execution that carries its
handoff id (`StudioClient.find_started`): found, the handoff is delivered with it. When Studio
cannot say, nothing is posted (a blind post could start a second execution): the record is
handed back and asked about again, and failed only once UNCERTAIN_BUDGET_FACTOR budgets have
passed, the dead letter saying that an execution may exist.

Not delivered, and not failed (`superseded`): a handoff whose conversation was released before
it was delivered, and a redriven copy of an old failure once a newer handoff reached a person.

Time: callers pass their invocation's deadline. Each record gets at most RECORD_BUDGET_SECONDS
of it from the moment it is claimed, and its lease lasts exactly that long plus the writes that
settle it, so a dispatcher killed by its timeout holds a record no longer than it could have
worked on it; the next invocation waits that lease out when it fits its own deadline. A record
that cannot finish in time is handed back with its lease released, for the stream's next retry.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import NamedTuple

from ..deadline import Deadline
from ..errors import ConcurrentUpdate
from ..handoff import HandoffPayload, InvalidPayload
from ..masking import mask_phone
from ..storage.records import HandoffRecord
from ..storage.session_store import SessionStore
from .busy_contact import BusyContact
from .failure import HandoffFailures
from .studio import ActiveExecution, ActiveLookup, ExecutionResult, StudioClient

log = logging.getLogger(__name__)

RECORD_BUDGET_SECONDS = 15.0  # Studio attempts, retry sleeps and a 409's resolution for one record
SETTLE_SECONDS = 3  # the writes after Studio's last answer (record, contact, dead letter)
RESERVE_SECONDS = 3.0  # kept back from the runtime's deadline: handing records back, the response
MIN_RECORD_SECONDS = 2.0  # a record is not started with less than this left
# A record that may have started an execution Studio cannot tell us about is failed only after
# this many delivery budgets: failing it would tell the customer nobody is coming.
UNCERTAIN_BUDGET_FACTOR = 2


class RetryLater(Exception):
    """Delivery failed for a reason that may pass; the event source should redeliver the record."""


class DispatchOutcome(NamedTuple):
    handoff_id: str
    status: str  # delivered | failed | superseded | deferred (to the watchdog) | skipped | settled
    outcome: str  # created | found | already_active | permanent_error | gave_up | contact_busy | overdue | ...
    execution_sid: str = ""
    latency_seconds: float = 0.0  # from the handoff's record to its outcome
    customer_notice: str = ""  # failed handoffs: sent | failed | already | off


class HandoffDispatcher:
    def __init__(
        self,
        store: SessionStore,
        studio: StudioClient,
        failures: HandoffFailures,
        *,
        flow_sid: str,
        max_deliveries: int,
        budget_seconds: int,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._studio = studio
        self._failures = failures
        self._busy = BusyContact(store, studio, flow_sid=flow_sid, clock=clock)
        self._flow_sid = flow_sid
        self._max_deliveries = max_deliveries
        self._budget_seconds = budget_seconds
        self._clock = clock
        self._sleep = sleep

    def dispatch(self, handoff_id: str, *, deadline: Deadline) -> DispatchOutcome:
        """Deliver one record before the invocation's `deadline`, in at most RECORD_BUDGET_SECONDS once claimed."""
        record = self._claim(handoff_id, deadline)
        if record.status != "dispatching":
            return DispatchOutcome(handoff_id, "skipped", record.status, record.execution_sid)
        return self._deliver(record, deadline.within(RECORD_BUDGET_SECONDS))

    def recover(self, handoff_id: str, *, deadline: Deadline) -> DispatchOutcome:
        """The watchdog's way in: an overdue promise is delivered now, failed, or finished."""
        record = self._store.get_handoff(handoff_id)
        if record is None:
            return DispatchOutcome(handoff_id, "skipped", "missing")
        now = int(self._clock())
        if record.status == "failed":
            notice = self._failures.aftermath(record, deadline=deadline)
            return DispatchOutcome(handoff_id, "settled", record.outcome or "failed", customer_notice=notice)
        if not record.undelivered:
            self._store.settle_promise(handoff_id)
            return DispatchOutcome(handoff_id, "settled", record.status, record.execution_sid)
        if record.status == "dispatching" and record.lease_until >= now:
            return DispatchOutcome(handoff_id, "skipped", "leased")  # the index lagged behind a live lease
        if now - record.created_at >= self._budget_seconds:
            claimed, owned = self._store.claim_handoff(handoff_id, now=now, lease_seconds=self._lease(deadline))
            if not owned or claimed is None:
                raise RetryLater(f"handoff {handoff_id} was taken by another dispatcher")
            if claimed.released:
                return self._supersede(claimed, "released", "its conversation was released before it was delivered")
            detail = f"undelivered after {now - record.created_at}s and {record.deliveries} deliveries" + (
                f" (last error: {record.error})" if record.error else ""
            )
            return self._fail(claimed, "overdue", detail, deadline.within(RECORD_BUDGET_SECONDS))
        return self.dispatch(handoff_id, deadline=deadline)

    # -- the lease ----------------------------------------------------------------------

    def _lease(self, deadline: Deadline) -> int:
        """As long as this invocation may still work on the record: its budget, and the writes after."""
        return math.ceil(deadline.within(RECORD_BUDGET_SECONDS).remaining()) + SETTLE_SECONDS

    def _claim(self, handoff_id: str, deadline: Deadline) -> HandoffRecord:
        """The record, leased to this invocation when it is still to be delivered."""
        now = int(self._clock())
        record, owned = self._store.claim_handoff(handoff_id, now=now, lease_seconds=self._lease(deadline))
        if record is None:
            # A stream record for an item that was never written cannot be delivered; say so loudly.
            raise LookupError(f"handoff {handoff_id} does not exist")
        if owned or record.status != "dispatching":
            return record
        # Leased elsewhere: usually an invocation that was killed. Its lease ends within one
        # record's budget and settling; wait for it when that fits, rather than spend a stream retry.
        wait = record.lease_until - now + 1
        if 0 < wait <= deadline.remaining() - MIN_RECORD_SECONDS:
            self._sleep(wait)
            now = int(self._clock())
            record, owned = self._store.claim_handoff(handoff_id, now=now, lease_seconds=self._lease(deadline))
            if record is not None and (owned or record.status != "dispatching"):
                return record
        raise RetryLater(f"handoff {handoff_id} is being delivered by another invocation")

    # -- delivery -----------------------------------------------------------------------

    def _deliver(self, record: HandoffRecord, deadline: Deadline) -> DispatchOutcome:
        try:
            payload = HandoffPayload.from_json(record.payload_json)
        except InvalidPayload as exc:
            return self._fail(record, "permanent_error", f"the stored payload is invalid: {exc}", deadline)
        if record.released:
            return self._supersede(record, "released", "its conversation was released before it was delivered")
        newer = self._busy.newer_delivery(record) if record.redriven_from else None
        if newer is not None:
            return self._supersede(
                record, "superseded", f"handoff {newer.handoff_id} reached a person after this one failed"
            )
        if record.maybe_sent:
            lookup = self._find_started(record, deadline)
            if lookup.found is not None:
                return self._found(record, lookup.found, deadline)
            if not lookup.complete:
                unknown = ExecutionResult("transient", detail=_uncertain(lookup), maybe_sent=True)
                return self._settle(record, payload, unknown, deadline)
        post = {"flow_sid": self._flow_sid, "to": record.to, "from_": record.from_}
        parameters = payload.studio_parameters(record.handoff_id)
        result = self._studio.start_execution(**post, parameters=parameters, deadline=deadline)
        if result.kind != "already_active":
            return self._settle(record, payload, result, deadline)
        verdict = self._busy.resolve(record, payload.conversation_id, deadline)
        if verdict.kind == "ours":
            return self._delivered(
                record, payload.conversation_id, "already_active", verdict.execution_sid, verdict.detail, deadline
            )
        if verdict.kind == "superseded":
            return self._supersede(record, "superseded", verdict.detail)
        if verdict.kind == "foreign":
            return self._fail(record, "contact_busy", verdict.detail, deadline)
        if verdict.kind == "unknown":
            return self._settle(record, payload, ExecutionResult("transient", detail=verdict.detail), deadline)
        # The stale execution is gone (or was already): post once more.
        again = self._studio.start_execution(**post, parameters=parameters, deadline=deadline)
        if again.kind == "already_active":
            return self._fail(record, "contact_busy", f"{again.detail}, still, after: {verdict.detail}", deadline)
        return self._settle(record, payload, again, deadline)

    def _settle(
        self, record: HandoffRecord, payload: HandoffPayload, result: ExecutionResult, deadline: Deadline
    ) -> DispatchOutcome:
        if result.kind == "created":
            return self._delivered(record, payload.conversation_id, "created", result.execution_sid, "", deadline)
        record = record._replace(maybe_sent=record.maybe_sent or result.maybe_sent)
        now = int(self._clock())
        if result.kind == "transient" and now - record.created_at < self._budget_seconds:
            # A Studio outage fails a handoff only once its delivery budget (time, not tries) is spent:
            # the stream retries at once a few times, then the watchdog every grace period.
            return self._hand_back(record, result.detail)
        outcome = "permanent_error" if result.kind == "permanent" else "gave_up"
        return self._fail(record, outcome, result.detail, deadline)

    def _hand_back(self, record: HandoffRecord, detail: str) -> DispatchOutcome:
        """Release the lease for a later delivery: the stream's next retry, or else the watchdog."""
        hid = record.handoff_id
        now = int(self._clock())
        self._store.release_handoff(
            hid, lease_token=record.lease_token, error=detail, now=now, maybe_sent=record.maybe_sent
        )
        if record.deliveries < self._max_deliveries:
            raise RetryLater(f"handoff {hid}: {detail} (delivery {record.deliveries} of {self._max_deliveries})")
        log.warning("handoff %s: %s; left to the watchdog (delivery %d)", hid, detail, record.deliveries)
        return DispatchOutcome(hid, "deferred", "transient", latency_seconds=now - record.created_at)

    # -- an execution that may have been started already --------------------------------

    def _find_started(self, record: HandoffRecord, deadline: Deadline) -> ActiveLookup:
        return self._studio.find_started(
            flow_sid=self._flow_sid,
            contact=record.to,
            handoff_ids={record.handoff_id, record.root_id},
            since=record.root_created_at,
            deadline=deadline,
        )

    def _found(self, record: HandoffRecord, found: ActiveExecution, deadline: Deadline) -> DispatchOutcome:
        log.warning(
            "handoff %s: an attempt whose answer was lost had started execution %s (%s)",
            record.handoff_id,
            found.sid,
            found.status,
        )
        detail = f"an earlier attempt had started it ({found.status})"
        return self._delivered(
            record, found.conversation_id, "found", found.sid, detail, deadline, execution_status=found.status
        )

    # -- outcomes, written only while this invocation holds the lease ---------------------

    def _delivered(
        self,
        record: HandoffRecord,
        conversation_id: str,
        outcome: str,
        execution_sid: str,
        detail: str,
        deadline: Deadline,
        *,
        execution_status: str = "active",
    ) -> DispatchOutcome:
        now = int(self._clock())
        hid = record.handoff_id
        if execution_sid:
            # First, so that a crash before the record is finished still leaves the contact's owner known.
            self._store.record_execution(
                flow_sid=self._flow_sid,
                customer=record.to,
                agent_number=record.from_,
                execution_sid=execution_sid,
                handoff_id=hid,
                conversation_id=conversation_id,
                now=now,
                status=execution_status,
            )
        try:
            finished = self._store.finish_handoff(
                hid,
                lease_token=record.lease_token,
                status="delivered",
                outcome=outcome,
                execution_sid=execution_sid,
                error=detail,
                now=now,
            )
        except ConcurrentUpdate:
            return self._lease_lost(record, "delivered", execution_sid)
        log.info("handoff %s delivered to %s (%s)", hid, mask_phone(record.to), outcome)
        if finished.released and execution_sid and execution_status == "active":
            self._end_released(finished, execution_sid, deadline)
            outcome = "released"
        return DispatchOutcome(hid, "delivered", outcome, execution_sid, now - record.created_at)

    def _end_released(self, record: HandoffRecord, execution_sid: str, deadline: Deadline) -> None:
        """The conversation was released while its execution was being started: end it, as the release would have."""
        end = self._studio.end_execution(flow_sid=self._flow_sid, execution_sid=execution_sid, deadline=deadline)
        now = int(self._clock())
        self._store.note_execution_end(record.handoff_id, ended=end.ended, detail=end.detail, now=now)
        if end.ended:
            self._store.mark_execution_ended(
                flow_sid=self._flow_sid,
                customer=record.to,
                agent_number=record.from_,
                execution_sid=execution_sid,
                now=now,
            )
            log.warning(
                "handoff %s: released while being delivered; its execution %s ended", record.handoff_id, execution_sid
            )
        else:
            log.error(
                "handoff %s: released while being delivered; its execution %s could not be ended: %s",
                record.handoff_id,
                execution_sid,
                end.detail,
            )

    def _supersede(self, record: HandoffRecord, outcome: str, detail: str) -> DispatchOutcome:
        """Not delivered and not failed: nobody needs it any more, so no execution and no dead letter."""
        now = int(self._clock())
        try:
            self._store.finish_handoff(
                record.handoff_id,
                lease_token=record.lease_token,
                status="superseded",
                outcome=outcome,
                error=detail,
                now=now,
            )
        except ConcurrentUpdate:
            return self._lease_lost(record, "superseded", "")
        log.warning("handoff %s not delivered: %s", record.handoff_id, detail)
        return DispatchOutcome(record.handoff_id, "superseded", outcome, latency_seconds=now - record.created_at)

    def _fail(self, record: HandoffRecord, outcome: str, detail: str, deadline: Deadline) -> DispatchOutcome:
        if record.maybe_sent:
            # Never tell the customer nobody is coming while an execution this handoff started may be active.
            lookup = self._find_started(record, deadline)
            if lookup.found is not None:
                return self._found(record, lookup.found, deadline)
            if not lookup.complete:
                now = int(self._clock())
                if now - record.created_at < UNCERTAIN_BUDGET_FACTOR * self._budget_seconds:
                    return self._hand_back(record, f"{detail}; {_uncertain(lookup)}")
                detail = f"{detail}; {_uncertain(lookup)}, and it may exist"
        try:
            notice = self._failures.fail(record, outcome, detail, deadline=deadline)
        except ConcurrentUpdate:
            return self._lease_lost(record, "failed", "")
        latency = int(self._clock()) - record.created_at
        return DispatchOutcome(record.handoff_id, "failed", outcome, latency_seconds=latency, customer_notice=notice)

    def _lease_lost(self, record: HandoffRecord, would_be: str, execution_sid: str) -> DispatchOutcome:
        log.warning(
            "handoff %s: its lease ran out and another dispatcher took it before it was recorded %s; "
            "that one records the outcome",
            record.handoff_id,
            would_be,
        )
        return DispatchOutcome(record.handoff_id, "skipped", "lease_lost", execution_sid)


def _uncertain(lookup: ActiveLookup) -> str:
    return f"an earlier attempt may have started an execution and Studio could not say ({lookup.detail})"
