"""What Studio's 409 means for one handoff: its own execution, a stale one to end, or someone else's.

A 409 says only that the contact (flow, customer) has an active execution. Reading it as "this
handoff was delivered" is right when the execution serves this conversation (an earlier attempt
of this handoff created it, and its answer was lost), and wrong otherwise: after a release, or
an expired hold, the old execution holds the contact and the new reason would reach nobody.

Which execution is active, and whose: first what this product recorded when it started the
contact's last execution (`StudioContact`), then Studio itself (the contact's active execution
and the HandoffData in its context). A stale execution of this product's is ended so that the
handoff can be posted once more; an execution this product did not start (a live call in the
flow, say) is never ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal, NamedTuple

from ..deadline import Deadline
from ..storage.records import HandoffRecord
from ..storage.session_store import SessionStore
from .studio import StudioClient

log = logging.getLogger(__name__)


class Verdict(NamedTuple):
    kind: Literal["ours", "retry", "foreign", "unknown"]
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
        if found is not None and found.conversation_id == conversation_id:
            return Verdict("ours", found.sid, "the contact's active execution carries this conversation")
        if found is not None and (found.conversation_id or (known is not None and found.sid == known.execution_sid)):
            stale = found.sid  # started by this product, for an earlier conversation
        elif found is not None:
            return Verdict("foreign", found.sid, f"execution {found.sid}, not started by this product, is active")
        elif lookup.complete:
            return Verdict("retry", detail="no active execution is listed any more")
        elif known is not None and known.status == "active":
            stale = known.execution_sid  # Studio could not be read: end the one we know of
        else:
            return Verdict(
                "unknown", detail=f"the contact is busy and Studio could not say with what ({lookup.detail})"
            )
        return self._end_stale(record, stale, deadline)

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
