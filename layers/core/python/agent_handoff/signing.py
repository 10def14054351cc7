"""Short-lived signed tokens: a subject, an expiry and a nonce under an HMAC-SHA256 for one purpose.

    v1.{subject}.{expiresAt}.{nonce}.{mac}     mac = HMAC(key, "v1\\n{purpose}\\n{subject}\\n{expiresAt}\\n{nonce}")

The purpose is inside the MAC and never in the token, so a token made for one use (a voice
socket binding) is worthless for another (a transcript link). Every part is URL-safe as it is,
so a token travels in a query string or a TwiML `<Parameter>` without encoding. Verification
checks the shape, then the MAC in constant time, then the expiry, and says which failed (for
logs; the token itself is never logged).

Hand-written rather than a JWT library: four fields and the standard library's hmac cover it,
and a JWT library would add an import to every cold start that issues or checks one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import NamedTuple

VERSION = "v1"
MAX_TOKEN_CHARS = 400
KEY_LABEL = "agent-handoff/signing-key/v1"

_SUBJECT = re.compile(r"[A-Za-z0-9_-]{1,128}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TOKEN = re.compile(
    r"v1\.(?P<subject>[A-Za-z0-9_-]{1,128})\.(?P<expires>[1-9][0-9]{0,11})"
    r"\.(?P<nonce>[A-Za-z0-9_-]{16,64})\.(?P<mac>[A-Za-z0-9_-]{43})"
)


class InvalidToken(ValueError):
    """A token that is malformed, forged, for another purpose, expired or dated too far ahead.

    `reason` is one of: malformed, signature, expired, too_far_ahead.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Claims(NamedTuple):
    subject: str
    expires_at: int
    nonce: str


def derive_key(secret: str | bytes, label: str = KEY_LABEL) -> bytes:
    """A key for this module from another secret, labelled so it is never that secret itself."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(raw, label.encode("utf-8"), hashlib.sha256).digest()


def signing_key(configured: str | None, auth_token: str | None) -> bytes:
    """The configured key (SIGNING_KEY), else one derived from the Twilio auth token."""
    if configured:
        return derive_key(configured)
    if not auth_token:
        raise ValueError("no signing key: set SIGNING_KEY or TWILIO_AUTH_TOKEN")
    return derive_key(auth_token)


class Signer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a signing key needs at least 16 bytes")
        self._key = key

    def sign(self, purpose: str, subject: str, *, expires_at: int, nonce: str | None = None) -> str:
        if not _SUBJECT.fullmatch(subject):
            raise ValueError("subject must be 1 to 128 characters of [A-Za-z0-9_-]")
        nonce = nonce if nonce is not None else secrets.token_urlsafe(16)
        if not _NONCE.fullmatch(nonce):
            raise ValueError("nonce must be 16 to 64 characters of [A-Za-z0-9_-]")
        if not 0 < expires_at < 10**12:
            raise ValueError("expires_at must be epoch seconds")
        return f"{VERSION}.{subject}.{expires_at}.{nonce}.{self._mac(purpose, subject, str(expires_at), nonce)}"

    def verify(self, token: object, purpose: str, *, now: float, max_lifetime: float) -> Claims:
        """The token's claims, if it is ours, for `purpose`, not expired at `now` and not expiring
        more than `max_lifetime` seconds after it (a token dated further ahead was not made here)."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("malformed")
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise InvalidToken("malformed")
        subject, expires, nonce, mac = match.group("subject", "expires", "nonce", "mac")
        if not hmac.compare_digest(mac, self._mac(purpose, subject, expires, nonce)):
            raise InvalidToken("signature")
        expires_at = int(expires)
        if expires_at <= now:
            raise InvalidToken("expired")
        if expires_at - now > max_lifetime:
            raise InvalidToken("too_far_ahead")
        return Claims(subject, expires_at, nonce)

    def _mac(self, purpose: str, subject: str, expires: str, nonce: str) -> str:
        message = "\n".join((VERSION, purpose, subject, expires, nonce)).encode("utf-8")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
