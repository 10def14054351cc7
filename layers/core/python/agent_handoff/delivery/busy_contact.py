"""What Studio's 409 means for one handoff: its own execution, a stale one to end, or someone else's.

A 409 says only that the contact (flow, customer) has an active execution. Reading it as "this
handoff was delivered" is right when the execution serves this conversation (an earlier attempt
of this handoff created it, and its answer was lost), and wrong otherwise: after a release, or
an expired hold, the old execution holds the contact and the new reason would reach nobody.

Which execution is active, and whose: first what this product recorded when it started the
contact's last execution (`StudioContact`), then Studio itself (the contact's active execution
and the HandoffData in its context). A stale execution of this product's, one started before
this handoff was promised, is ended so that the handoff can be posted once more. One started
after it serves a newer handoff, a person may be talking with the customer now: this handoff
is superseded, and nothing is ended (`make redrive` of an old failure must not cut a live
conversation). An execution this product did not start (a live call in the flow, say) is
never ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal, NamedTuple

from ..deadline import Deadline
from ..storage.records import HandoffRecord, StudioContact
from ..storage.session_store import SessionStore
from .studio import CLOCK_SKEW_SECONDS, StudioClient

log = logging.getLogger(__name__)


class Verdict(NamedTuple):
    kind: Literal["ours", "retry", "foreign", "unknown", "superseded"]
    execution_sid: str = ""  # ours: the execution that serves this handoff
    detail: str = ""
    ended: str = ""  # retry: the stale execution ended to make room


class BusyContact:
    def __init__(
        self, store: SessionStore, studio: StudioClient, *, flow_sid: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._studio = studio
        self._flow_sid = flow_sid
        self._clock = clock

    def resolve(self, record: HandoffRecord, conversation_id: str, deadline: Deadline) -> Verdict:
        known = self._store.studio_contact(self._flow_sid, record.to, record.from_)
        if known is not None and known.status == "active" and known.conversation_id == conversation_id:
            return Verdict("ours", known.execution_sid, "the contact's execution was started for this conversation")
        lookup = self._studio.active_execution(flow_sid=self._flow_sid, contact=record.to, deadline=deadline)
        found = lookup.found
        if found is not None and (found.conversation_id == conversation_id or _same_handoff(found.handoff_id, record)):
            return Verdict("ours", found.sid, "the contact's active execution carries this conversation")
        ours = known is not None and found is not None and found.sid == known.execution_sid
        if found is not None and (found.conversation_id or found.handoff_id or ours):
            # Started by this product, for another conversation: when, by our own record, else Studio's clock.
            if ours and known is not None and known.started_at:
                return self._stale_or_newer(record, found.sid, known.started_at, deadline, our_clock=True)
            return self._stale_or_newer(record, found.sid, found.created_at, deadline, our_clock=False)
        if found is not None:
            return Verdict("foreign", found.sid, f"execution {found.sid}, not started by this product, is active")
        if lookup.complete:
            return Verdict("retry", detail="no active execution is listed any more")
        if known is not None and known.status == "active":
            # Studio could not be read: the one we know of.
            return self._stale_or_newer(record, known.execution_sid, known.started_at, deadline, our_clock=True)
        return Verdict("unknown", detail=f"the contact is busy and Studio could not say with what ({lookup.detail})")

    def newer_delivery(self, record: HandoffRecord) -> StudioContact | None:
        return newer_delivery(self._store, self._flow_sid, record)

    def _stale_or_newer(
        self, record: HandoffRecord, sid: str, started_at: int, deadline: Deadline, *, our_clock: bool
    ) -> Verdict:
        """End an execution started before this handoff was promised; leave a newer one to the person it serves.

        A redriven copy of an old failure leaves alone any execution not clearly older (a tie, or
        one whose age nobody knows): the original's promise is old, the person may be live. A
        first delivery ends one not clearly newer, allowing for Studio's clock against ours.
        """
        if record.redriven_from:
            newer = not started_at or started_at >= record.root_created_at
        else:
            margin = 0 if our_clock else CLOCK_SKEW_SECONDS
            newer = bool(started_at) and started_at > record.root_created_at + margin
        if newer:
            return Verdict(
                "superseded",
                sid,
                f"execution {sid} of a newer handoff is serving the contact"
                + (f" (started {started_at - record.root_created_at}s after this one)" if started_at else ""),
            )
        return self._end_stale(record, sid, deadline)

    def _end_stale(self, record: HandoffRecord, stale: str, deadline: Deadline) -> Verdict:
        end = self._studio.end_execution(flow_sid=self._flow_sid, execution_sid=stale, deadline=deadline)
        if not end.ended:
            return Verdict("unknown", detail=f"stale execution {stale} could not be ended ({end.detail})")
        log.warning("ended stale Studio execution %s to deliver handoff %s", stale, record.handoff_id)
        self._store.mark_execution_ended(
            flow_sid=self._flow_sid,
            customer=record.to,
            agent_number=record.from_,
            execution_sid=stale,
            now=int(self._clock()),
        )
        return Verdict("retry", detail=f"ended stale execution {stale}", ended=stale)


def newer_delivery(store: SessionStore, flow_sid: str, record: HandoffRecord) -> StudioContact | None:
    """The contact's last execution, when another handoff started it after this one was promised."""
    known = store.studio_contact(flow_sid, record.to, record.from_)
    if known is None or not known.handoff_id or _same_handoff(known.handoff_id, record):
        return None
    return known if known.started_at >= record.root_created_at else None


def _same_handoff(handoff_id: str, record: HandoffRecord) -> bool:
    """`handoff_id` is this record, its original, or another copy of that original."""
    return bool(handoff_id) and handoff_id.split(".r")[0] == record.root_id
