"""The dead-letter queue adapter: failed handoffs land here with their reason, never silently."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class SqsDeadLetters:
    def __init__(self, client: Callable[[], Any], queue_url: str) -> None:
        # A factory, not a client: most cold starts never dead-letter, and an SQS client costs
        # one more service model to load (about a tenth of the floor, see `make bench`).
        self._client = client
        self._queue_url = queue_url

    def send(self, message: dict[str, Any]) -> None:
        self._client().send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps(message, separators=(",", ":")),
            MessageAttributes={
                "reason": {"DataType": "String", "StringValue": str(message.get("reason", ""))[:256] or "unknown"},
                "handoffId": {"DataType": "String", "StringValue": str(message.get("handoffId", "")) or "unknown"},
            },
        )
