"""Sending a DynamoDB call again while DynamoDB is only busy, for as long as the invocation allows.

The SDK has already retried throttling and conflicts a few times within a second or so; a call
that still failed is usually a burst that clears soon. Where one lost write would strand a
caller (a socket's `setup`, the action callback), it is sent again after a jittered pause while
the deadline leaves room for it. Failures that say "no" rather than "not now" are not retried.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from ..deadline import Deadline
from ..errors import StoreBusy, StoreError
from .dynamo import TransactionCancelled

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_PAUSE_SECONDS = 0.05
MAX_PAUSE_SECONDS = 1.0
# Without a deadline (a script, a test), a few sends and no more.
ATTEMPTS_WITHOUT_DEADLINE = 3
# A send started with less time than this left would likely outlive the deadline.
MIN_SEND_SECONDS = 0.25


def is_busy(exc: BaseException) -> bool:
    """DynamoDB refused for now: throttled, or a transaction cancelled only by conflicts or throttling."""
    return isinstance(exc, StoreBusy) or (isinstance(exc, TransactionCancelled) and exc.busy)


def while_busy(
    operation: Callable[[], T],
    *,
    deadline: Deadline | None,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`operation()`, sent again while it fails only because DynamoDB is busy and time remains."""
    pause = FIRST_PAUSE_SECONDS
    attempt = 1
    while True:
        try:
            return operation()
        except StoreError as exc:
            if not is_busy(exc):
                raise
            # Jitter, so two writers that conflicted do not meet again at the same moment.
            wait = pause * (1 + random.random())
            if deadline is None:
                if attempt >= ATTEMPTS_WITHOUT_DEADLINE:
                    raise
            elif deadline.remaining() < wait + MIN_SEND_SECONDS:
                raise
            log.info("%s: store busy (%s); sending it again in %.2f s", what, exc, wait)
            sleep(wait)
            pause = min(pause * 2, MAX_PAUSE_SECONDS)
            attempt += 1
