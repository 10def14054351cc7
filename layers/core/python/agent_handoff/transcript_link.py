"""Signed, expiring links to one conversation's transcript, for the human who takes over.

    {base}/handoff/transcript?t=v1.{conversationId}.{expiresAt}.{nonce}.{mac}

The token is signing.py's, under its own purpose label: the same key signs voice socket
bindings, but a binding never opens a transcript and a link never opens a socket. The MAC
covers the conversation id and the expiry, so a link cannot be moved to another conversation
or kept alive longer; the URL carries no phone number, and nothing lists conversations.
A link is about 190 characters on an execute-api domain: it travels whole or not at all
(payload_limits drops it rather than cut it).
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from .signing import Claims, Signer

PURPOSE = "handoff-transcript"
PATH = "/handoff/transcript"
QUERY = "t"
DEFAULT_LIFETIME_SECONDS = 24 * 3600
# A link dated further ahead than its lifetime was not made here (or the lifetime was lowered since).
CLOCK_SKEW_SECONDS = 60
_NONCE_BYTES = 12  # 16 URL-safe characters, the shortest nonce signing.py takes


class TranscriptLinks:
    def __init__(self, signer: Signer, lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS) -> None:
        self._signer = signer
        self.lifetime_seconds = lifetime_seconds

    def url(self, conversation_id: str, *, base_url: str, now: float) -> str:
        """The link, or "" when there is no base URL or the id cannot be signed (the payload then has none)."""
        if not base_url:
            return ""
        try:
            token = self._signer.sign(
                PURPOSE,
                conversation_id,
                expires_at=int(now) + self.lifetime_seconds,
                nonce=secrets.token_urlsafe(_NONCE_BYTES),
            )
        except ValueError:
            return ""
        return f"{base_url.rstrip('/')}{PATH}?{QUERY}={quote(token, safe='')}"

    def verify(self, token: object, *, now: float) -> Claims:
        """The link's claims (`subject` is the conversation id), or InvalidToken saying why not."""
        return self._signer.verify(token, PURPOSE, now=now, max_lifetime=self.lifetime_seconds + CLOCK_SKEW_SECONDS)
