"""Speaking a reply into a ConversationRelay socket, clause by clause, while it is being written.

Text arrives in pieces (an LLM stream, or a whole reply at once). Each complete clause becomes
one `text` frame as soon as the next one begins, so the caller hears the first words before the
model has finished; no frame goes out unless its turn was confirmed current (by the turn
counter in DynamoDB) within the last CONFIRMATION_WINDOW_SECONDS, so what the caller talked
over is not sent; `finish` sends what is left with `last: true`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .protocol import OutboundMessage, Text
from .speech import MIN_CLAUSE_CHARS, clauses, settled_length

# A reply that is written as fast as it is spoken (a whole reply at once) needs no DynamoDB
# read per frame, while a slow stream is re-checked as often as an interrupt could matter. An
# interrupt takes about as long to reach DynamoDB (Twilio, API Gateway, a Lambda, a write).
CONFIRMATION_WINDOW_SECONDS = 0.1


class Speaker:
    def __init__(
        self,
        send: Callable[[OutboundMessage], bool],
        still_current: Callable[[], bool],
        *,
        confirmed_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`confirmed_at`: when the turn was last known current (the clock's time), if it was."""
        self._send = send
        self._still_current = still_current
        self._confirmed_at = confirmed_at
        self._clock = clock
        self._buffer = ""
        self.sent = 0
        self.stopped = False  # interrupted, or the connection is gone

    def feed(self, text: str) -> None:
        if self.stopped:
            return
        self._buffer += text
        settled = settled_length(self._buffer)
        if not settled:
            return
        pieces = clauses(self._buffer[:settled])
        held = ""
        if pieces and (len(pieces[-1]) < MIN_CLAUSE_CHARS or not self._buffer[settled:].strip()):
            # Too short to say alone, or possibly the reply's end: it waits for the next words
            # (or goes out with `last: true`), so a reply never costs an extra empty frame.
            held = pieces.pop() + " "
        for piece in pieces:
            if not self._post(piece + " ", last=False):
                return
        self._buffer = held + self._buffer[settled:]

    def finish(self) -> bool:
        """Send the rest with `last: true`. False when the turn was interrupted or the socket closed."""
        if self.stopped:
            return False
        rest = self._buffer.strip()
        self._buffer = ""
        if not rest and not self.sent:
            return True
        return self._post(rest, last=True)

    def _post(self, token: str, *, last: bool) -> bool:
        if not self._confirmed() or not self._send(Text(token=token, last=last)):
            self.stopped = True
            return False
        self.sent += 1
        return True

    def _confirmed(self) -> bool:
        now = self._clock()
        if self._confirmed_at is not None and now - self._confirmed_at <= CONFIRMATION_WINDOW_SECONDS:
            return True
        if not self._still_current():
            return False
        self._confirmed_at = now  # when the read began: the conservative end of it
        return True
