"""Speaking a reply into a ConversationRelay socket, clause by clause, while it is being written.

Text arrives in pieces (an LLM stream, or a whole reply at once). Each complete clause becomes
one `text` frame as soon as the next one begins, so the caller hears the first words before the
model has finished. No frame goes out unless its turn is known current (the turn counter in
DynamoDB) as of CONFIRMATION_WINDOW_SECONDS ago at most, so what the caller talked over is not
sent. A turn is confirmed at most three times, so a prompt costs three DynamoDB calls at most,
however many clauses and however slowly the model writes:

- by claiming the turn (before the model is asked);
- by one conditional write that also marks the turn as speaking (CallStore.confirm_speaking),
  for the first clause that finds that confirmation stale (typically the first
  words of a streamed reply: the model takes longer than the window to write them);
- by the turn's own closing write (`commit`: the history, conditional on the turn).

A clause that finds its confirmation stale once that check is spent is held back, and goes out
with the rest of the reply as its last frame once the closing write has found the turn still
current: after an interrupt, nothing held is ever sent. The caller is still hearing the earlier
clauses while the model finishes, which it usually does long before they have been spoken (models
write ten times faster than speech). The bound's price, chosen over a read per clause: a model
slower than speech leaves a pause after the first clause until it has finished, and an interrupt
that reaches DynamoDB in the instant between the closing write and its frame (the race every
confirmation has, about CONFIRMATION_WINDOW_SECONDS wide) lets the held rest through as that frame.
Outside the bound, by design: a late interrupt of the previous answer that rewrites the history
during the turn costs the closing write one retry (four calls), and a failed post costs a write
that stores what the caller did hear.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from ..errors import StoreError
from .protocol import OutboundMessage, Text
from .speech import MIN_CLAUSE_CHARS, clauses, settled_length

log = logging.getLogger(__name__)

# How long a confirmation stays good: about as long as an interrupt takes to reach DynamoDB
# (Twilio, API Gateway, a Lambda, a write), so a reply written at once needs no read at all.
CONFIRMATION_WINDOW_SECONDS = 0.1
# With the claim and the closing write: three DynamoDB calls per prompt at most.
READS_PER_REPLY = 1


class Speaker:
    def __init__(
        self,
        send: Callable[[OutboundMessage], bool],
        still_current: Callable[[str], bool],
        *,
        confirmed_at: float | None = None,
        reads: int = READS_PER_REPLY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`confirmed_at`: when the turn was last known current (the clock's time), if it was;
        `still_current`: checks the turn (at most `reads` times), given the answer's opening as it
        will stand once the clause waiting on the check is out."""
        self._send = send
        self._still_current = still_current
        self._confirmed_at = confirmed_at
        self._reads = reads
        self._clock = clock
        self._buffer = ""  # written, not yet a complete clause
        self._held = ""  # complete clauses waiting for the closing write
        self.sent = 0
        self.said = ""  # what went out, in order
        self.reads = 0
        self.stopped = False  # interrupted, or the connection is gone
        self.committed = False  # the closing write stored the reply (whether or not all of it went out)
        self.post_failed = False  # a frame could not be posted (the socket is gone or failing)

    def feed(self, text: str) -> None:
        if self.stopped:
            return
        self._buffer += text
        settled = settled_length(self._buffer)
        if not settled:
            return
        pieces = clauses(self._buffer[:settled])
        kept = ""
        if pieces and (len(pieces[-1]) < MIN_CLAUSE_CHARS or not self._buffer[settled:].strip()):
            # Too short to say alone, or possibly the reply's end: it waits for the next words
            # (or goes out with `last: true`), so a reply never costs an extra empty frame.
            kept = pieces.pop() + " "
        self._buffer = kept + self._buffer[settled:]
        for piece in pieces:
            verdict = "hold" if self._held else self._check(piece)
            if verdict == "stop":
                self.stopped = True
                return
            if verdict == "hold":  # in order: once one clause waits, the ones after it wait too
                self._held += piece + " "
            elif not self._post(piece + " ", last=False):
                return

    def finish(self, commit: Callable[[], bool] = lambda: True) -> bool:
        """Send the rest with `last: true` and close the turn with `commit` (its conditional write:
        True when the turn was still current). False when the turn was interrupted, a post failed,
        or `commit` found the turn overtaken; `commit` runs only if everything before it was sent.
        """
        if self.stopped:
            return False
        rest = (self._held + self._buffer).strip()
        self._held = self._buffer = ""
        if not rest:
            return self._commit(commit)
        if self._fresh():
            return self._post(rest, last=True) and self._commit(commit)
        # Stale: the closing write confirms the turn, and costs no read; then the rest goes out
        # (if that post fails, `committed` with `said` tells the caller what to take back).
        if not self._commit(commit):
            self.stopped = True
            return False
        return self._post(rest, last=True)

    def _commit(self, commit: Callable[[], bool]) -> bool:
        self.committed = commit()
        return self.committed

    def _post(self, token: str, *, last: bool) -> bool:
        if not self._send(Text(token=token, last=last)):
            self.stopped = self.post_failed = True
            return False
        self.sent += 1
        self.said += token
        return True

    def _fresh(self) -> bool:
        return self._confirmed_at is not None and self._clock() - self._confirmed_at <= CONFIRMATION_WINDOW_SECONDS

    def _check(self, piece: str) -> Literal["send", "hold", "stop"]:
        if self._fresh():
            return "send"
        if self.reads >= self._reads:
            return "hold"
        now = self._clock()
        self.reads += 1
        try:
            current = self._still_current(self.said + piece)
        except StoreError:
            # Unknown, not overtaken: hold, as once the check is spent; the closing write decides.
            log.warning("the turn's check failed; its clauses wait for the closing write", exc_info=True)
            return "hold"
        if not current:
            return "stop"
        self._confirmed_at = now  # when the read began: the conservative end of it
        return "send"
