"""The watchdog: every minute, finds promises to customers that are overdue and keeps them.

What it looks at is what still owes a customer something: items carrying `promise` (a kind)
and `promiseDue` (epoch seconds), the table's sparse PromisesIndex. Each kind has a keeper that
queries its own promises that fell due and keeps them; the table is never scanned.

Kinds: "handoff" (an SMS handoff not yet delivered, or failed with its aftermath unfinished)
is kept by `HandoffKeeper`, through the dispatcher's own path. Another kind (the voice
channel's "voice_end") plugs in as another PromiseKeeper given to the Watchdog (see
`wiring.promise_keepers`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from ..deadline import Deadline
from ..keepers import KeeperReport, PromiseKeeper
from ..storage.session_store import SessionStore
from .dispatch import MIN_RECORD_SECONDS, HandoffDispatcher, RetryLater

log = logging.getLogger(__name__)

BATCH = 100  # promises read per kind and run; the rest wait for the next minute


class Watchdog:
    def __init__(self, keepers: Sequence[PromiseKeeper], *, clock: Callable[[], float] = time.time) -> None:
        self._keepers = list(keepers)
        self._clock = clock

    def run(self, deadline: Deadline) -> dict[str, KeeperReport]:
        reports: dict[str, KeeperReport] = {}
        for keeper in self._keepers:
            try:
                reports[keeper.kind] = keeper.keep_overdue(now=int(self._clock()), deadline=deadline)
            except Exception:
                # One kind's failure (its query throttled, say) must not keep the others' promises waiting.
                log.exception("the %s keeper failed; its promises stay overdue for the next run", keeper.kind)
                reports[keeper.kind] = KeeperReport(errors=1)
        return reports


class HandoffKeeper:
    kind = "handoff"

    def __init__(self, store: SessionStore, dispatcher: HandoffDispatcher) -> None:
        self._store = store
        self._dispatcher = dispatcher

    def keep_overdue(self, *, now: int, deadline: Deadline) -> KeeperReport:
        report = KeeperReport()
        overdue = self._store.handoff_promises(due_before=now, limit=BATCH)
        for handoff_id in report.in_time(overdue, deadline, MIN_RECORD_SECONDS):
            try:
                outcome = self._dispatcher.recover(handoff_id, deadline=deadline)
            except RetryLater as exc:
                log.info("overdue handoff %s handed back: %s", handoff_id, exc)
                report.retried += 1
                continue
            except Exception:
                log.exception("overdue handoff %s could not be kept this run", handoff_id)
                report.errors += 1
                continue
            report.outcomes.append(f"{handoff_id}: {outcome.status} {outcome.outcome}")
            if outcome.status == "delivered":
                log.warning("overdue handoff %s recovered by the watchdog (%s)", handoff_id, outcome.outcome)
                report.recovered += 1
            elif outcome.status == "failed":
                report.failed += 1
            elif outcome.status == "deferred":  # Studio still failing: the next run tries again
                report.retried += 1
            else:
                report.settled += 1
        return report
