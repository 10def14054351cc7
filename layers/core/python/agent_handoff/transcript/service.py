"""GET /handoff/transcript?t=...: a signed link in, the conversation (or a clear refusal) out.

    403  no link, a malformed or tampered one, one made for another purpose or dated too far ahead
    410  a genuine link past its expiry
    404  a genuine, unexpired link whose conversation is gone (expired from the table, or restarted)
    200  the page, or JSON for `Accept: application/json`

The signature is checked before anything is read, so a forged link costs no DynamoDB call, and
a refusal never says whether a conversation exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from ..signing import InvalidToken
from ..storage.transcripts import TranscriptStore
from ..transcript_link import TranscriptLinks
from . import page


class Served(NamedTuple):
    response: dict[str, Any]
    outcome: str  # served, refused:<reason>, expired, gone
    conversation_id: str = ""  # only once the link proved genuine


class TranscriptService:
    def __init__(
        self, store: TranscriptStore, links: TranscriptLinks, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._links = links
        self._clock = clock

    def serve(self, token: str | None, *, accept: str = "") -> Served:
        as_json = page.wants_json(accept)
        now = self._clock()
        try:
            claims = self._links.verify(token, now=now)
        except InvalidToken as refused:
            if refused.reason == "expired":
                return Served(
                    page.error_page(
                        410,
                        "This transcript link has expired",
                        "Transcript links work for a limited time. Open the conversation from its task again, "
                        "or ask for a new link.",
                        as_json=as_json,
                    ),
                    "expired",
                )
            return Served(
                page.error_page(
                    403,
                    "This transcript link is not valid",
                    "Open the link exactly as it appears in the task's attributes (transcriptUrl).",
                    as_json=as_json,
                ),
                f"refused:{refused.reason}" if token else "refused:missing",
            )
        transcript = self._store.find(claims.subject, now=int(now))
        if transcript is None:
            return Served(
                page.error_page(
                    404,
                    "This conversation is no longer available",
                    "It has expired, or the customer's conversation has since started again.",
                    as_json=as_json,
                ),
                "gone",
                claims.subject,
            )
        render = page.render_json if as_json else page.render_html
        body = render(transcript, link_expires_at=claims.expires_at)
        return Served(page.response(200, body, as_json=as_json), "served", claims.subject)
