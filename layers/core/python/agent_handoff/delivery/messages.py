"""Twilio Messages API: one SMS to a customer, sent at most once.

Used when a handoff fails, to tell the customer nobody is coming instead of leaving them to
wait out the hold. The caller claims the send in DynamoDB first; here a POST whose answer was
lost (a timeout) is not repeated, since Messages has no idempotency key and a repeat could
text the customer twice. Refused connections and 429/5xx answers are retried: nothing was sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from ..deadline import Deadline
from .twilio_http import MIN_REQUEST_SECONDS, TwilioHttp

MAX_ATTEMPTS = 3


class SendResult(NamedTuple):
    sent: bool
    message_sid: str = ""
    detail: str = ""


class TwilioMessages:
    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        credentials: tuple[str, str],
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._http = TwilioHttp(credentials=credentials, read_timeout=5.0)
        self._sleep = sleep or time.sleep

    def send(self, *, to: str, from_: str, body: str, deadline: Deadline) -> SendResult:
        detail = "not attempted"
        for attempt in range(1, MAX_ATTEMPTS + 1):
            answer = self._http.request(
                "POST", self._url, form={"To": to, "From": from_, "Body": body}, deadline=deadline
            )
            if answer.ok:
                return SendResult(True, str(answer.body.get("sid") or ""))
            detail = answer.detail()
            if answer.status == 0 and answer.sent:
                return SendResult(False, detail=f"{detail} (not repeated: it may have been sent)")
            if not answer.transient or attempt == MAX_ATTEMPTS:
                break
            delay = min(answer.retry_after if answer.retry_after is not None else 0.5 * attempt, 5.0)
            if delay > deadline.remaining() - MIN_REQUEST_SECONDS:
                break
            self._sleep(delay)
        return SendResult(False, detail=detail)
