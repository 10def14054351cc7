"""The watchdog's keeper of voice promises: an `end` a caller is owed that no frame has sent.

A call's next frame normally sends an overdue `end` (see promises.EndPromises); this keeps the
promise for a caller who has gone quiet, posting to the connection the call record names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..deadline import Deadline
from ..keepers import KeeperReport
from ..storage.call_store import VOICE_END, CallSession, CallStore
from .promises import EndPromises, FrameSender

log = logging.getLogger(__name__)

BATCH = 100
# One post and three small writes; a call with less time left waits for the next run.
MIN_CALL_SECONDS = 2.0

SenderFor = Callable[[CallSession], FrameSender]


class VoiceEndKeeper:
    kind = VOICE_END

    def __init__(self, calls: CallStore, promises: EndPromises, sender_for: SenderFor) -> None:
        self._calls = calls
        self._promises = promises
        self._sender_for = sender_for

    def keep_overdue(self, *, now: int, deadline: Deadline) -> KeeperReport:
        report = KeeperReport()
        overdue = self._calls.overdue_voice_ends(now=now, limit=BATCH)
        for promise in report.in_time(overdue, deadline, MIN_CALL_SECONDS):
            try:
                outcome = self._keep(promise.call_sid)
            except Exception:
                log.exception("overdue end of call %s could not be kept this run", promise.call_sid)
                report.errors += 1
                continue
            report.outcomes.append(f"{promise.call_sid}: {outcome}")
            if outcome == "sent":
                log.warning("overdue end of call %s sent by the watchdog", promise.call_sid)
                report.recovered += 1
            elif outcome in ("failed", "busy", "elsewhere"):
                report.retried += 1
            else:  # gone: the action callback routes the stored handoff; not_owed: nothing left to do
                report.settled += 1
        return report

    def _keep(self, call_sid: str) -> str:
        call = self._calls.get_call(call_sid)
        if call is None:
            return "not_owed"  # the call's item expired with its promise
        if call.handoff_state != "pending" or not call.connection_id or not call.endpoint:
            # Nothing this keeper can post: routed, closed, or never bound to a socket (the
            # action callback routes such a call with its stored handoff).
            self._calls.forget_end_promise(call_sid)
            return "not_owed"
        return self._promises.resend_pending_end(call, self._sender_for(call))
