"""Keeping a voice handoff's promise: a caller who heard the handoff line gets an `end` carrying it.

A stored handoff is `pending` until an `end` carrying it has been posted; only a successful post
makes it `end_sent`. Whoever posts (the turn that decided the handoff, the next frame of the
call if that turn died, the watchdog) first takes a short lease on the call, so one invocation
posts at a time; a sender that dies mid-post loses its lease when it runs out.

Exactly once, but for one window: a sender that dies after its post succeeded and before it
recorded `end_sent` leaves the handoff `pending`, and the next sender posts `end` again once the
lease runs out. By then Twilio has ended that session and closed the socket, so the repeat
normally finds it gone (410); Twilio's handling of a second `end` on a live session is not
documented, which is why concurrent posts are excluded rather than tolerated.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Literal, Protocol

from ..deadline import Deadline
from ..errors import StoreError
from ..storage.call_store import CallSession, CallStore
from ..storage.retry import while_busy
from .protocol import End, OutboundMessage

log = logging.getLogger(__name__)

# Longer than the longest post the sender can make (wiring.management_client: 3 attempts of
# 1 s connect + 2 s read, with the standard retry backoff between them: about 12 s), so a live
# sender never loses its lease mid-post; short enough that a dead one's lease frees the call soon.
END_LEASE_SECONDS = 15.0
POLL_SECONDS = 0.2

EndOutcome = Literal["sent", "gone", "failed", "busy", "not_owed", "elsewhere"]


class FrameSender(Protocol):
    gone: bool

    def send(self, message: OutboundMessage) -> bool:
        """Post one frame; False when the post failed (`gone` once the connection is gone)."""
        ...

    def close(self) -> bool:
        """Close the connection; False if it may still be open."""
        ...


class EndPromises:
    def __init__(
        self,
        calls: CallStore,
        *,
        lease_seconds: float = END_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._calls = calls
        self._lease_ms = int(lease_seconds * 1000)
        self._clock = clock
        self._sleep = sleep

    def keep(
        self, call_sid: str, connection_id: str, sender: FrameSender, *, deadline: Deadline | None = None
    ) -> EndOutcome:
        """Post the pending handoff's `end` to `connection_id`, if one is owed and nobody else is posting it.

        While another invocation holds the lease this waits (until `deadline`, not at all without
        one): for it to finish, or for its lease to run out and take over from a dead sender.
        """
        owner = uuid.uuid4().hex
        while True:
            claim = self._calls.claim_end(
                call_sid,
                connection_id=connection_id,
                owner=owner,
                now_ms=int(self._clock() * 1000),
                lease_ms=self._lease_ms,
            )
            if claim.status == "claimed":
                return self._post(call_sid, claim.payload, owner, sender, deadline)
            if claim.status != "busy" or deadline is None or deadline.remaining() < POLL_SECONDS:
                if claim.status == "busy":
                    log.info("call %s: another invocation is posting its end", call_sid)
                return claim.status
            self._sleep(POLL_SECONDS)

    def resend_pending_end(self, call: CallSession, sender: FrameSender) -> EndOutcome:
        """For the watchdog: post the stored `end` of an overdue call to its connection (`call.endpoint`)."""
        if call.handoff_state != "pending" or not call.connection_id:
            return "not_owed"
        return self.keep(call.call_sid, call.connection_id, sender)

    def _post(
        self, call_sid: str, payload: str, owner: str, sender: FrameSender, deadline: Deadline | None
    ) -> EndOutcome:
        if sender.send(End(handoff_data=payload)):
            try:
                recorded = while_busy(
                    lambda: self._calls.end_sent(call_sid, owner=owner), deadline=deadline, what="recording an end"
                )
            except StoreError:
                # Posted is sent, for this invocation: nothing may follow the `end`. The handoff stays
                # `pending` under this lease; once it runs out, a later sender's repeat finds the socket
                # Twilio closed after this `end` gone (410), as the module's docstring describes.
                log.exception("call %s: end posted but not recorded as sent", call_sid)
                return "sent"
            if not recorded:
                log.warning("call %s: end posted after its lease ran out; another sender may post it too", call_sid)
            log.info("call %s: end sent with the stored handoff", call_sid)
            return "sent"
        gone = sender.gone
        self._calls.release_end(call_sid, owner=owner, socket_gone=gone)
        if gone:
            log.warning("call %s: socket gone before the end; the action callback routes the stored handoff", call_sid)
            return "gone"
        log.warning("call %s: end not posted; the next frame or the watchdog sends it again", call_sid)
        return "failed"
