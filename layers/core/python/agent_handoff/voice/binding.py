"""Voice socket bindings: a single-use token that ties one WebSocket connection to one call.

The wss URL is the same for every call, so the handshake's signature alone would let anyone who
saw one handshake open sockets until the auth token changes. Each `<ConversationRelay>` the
product writes (the first answer and every reconnect) therefore carries a fresh token signed
for its CallSid with a short expiry, both in the URL's query string (`$connect` sees it) and as
a `<Parameter>` (`setup.customParameters`). `$connect` checks it and records the first
connection to present it as its owner; `setup` must present the same token for the same call.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from ..signing import Claims, Signer

PURPOSE = "voice-socket-binding"
PARAMETER = "binding"  # the query parameter and the <Parameter> name
# Twilio opens the socket as soon as it reads the TwiML; five minutes is ample, even for a retried webhook.
TTL_SECONDS = 300
CLOCK_SKEW_SECONDS = 60


def binding_id(token: str) -> str:
    """What the store keeps of a token: its hash, never the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


class RelayBindings:
    def __init__(self, signer: Signer, *, ttl_seconds: int = TTL_SECONDS, clock: Callable[[], float] = time.time):
        self._signer = signer
        self._ttl = ttl_seconds
        self._clock = clock

    def issue(self, call_sid: str, *, nonce: str | None = None, expires_at: int | None = None) -> str:
        """A fresh binding for the call; pass `nonce` and `expires_at` to issue one again."""
        expires_at = expires_at or int(self._clock()) + self._ttl
        return self._signer.sign(PURPOSE, call_sid, expires_at=expires_at, nonce=nonce)

    def verify(self, token: object, *, at: float | None = None) -> Claims:
        """The binding's claims (subject: the CallSid), or signing.InvalidToken.

        `at`: when the handshake arrived (API Gateway's requestTimeEpoch), else now.
        """
        now = self._clock() if at is None else at
        return self._signer.verify(token, PURPOSE, now=now, max_lifetime=self._ttl + CLOCK_SKEW_SECONDS)

    @property
    def ttl_seconds(self) -> int:
        return self._ttl
