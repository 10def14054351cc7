"""Partial batch responses for a DynamoDB stream: which records Lambda must deliver again.

Written here rather than taken from Powertools' BatchProcessor: importing that brings asyncio
and every event data class, 0.1x of the floor on each cold start, for a contract that is one
list of sequence numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..deadline import Deadline

log = logging.getLogger(__name__)


class NotAStreamEvent(ValueError):
    pass


def new_image_text(record: dict[str, Any], attribute: str) -> str | None:
    """A string attribute of the record's new image, as DynamoDB's wire format carries it."""
    value = (record.get("dynamodb") or {}).get("NewImage", {}).get(attribute)
    return value.get("S") if isinstance(value, dict) else None


def process_stream_batch(
    event: Any,
    handle: Callable[[dict[str, Any]], object],
    on_failure: Callable[[dict, Exception], None],
    *,
    deadline: Deadline | None = None,
    min_seconds: float = 0.0,
) -> dict[str, list[dict[str, str]]]:
    """Handle every record; name each that raised, so Lambda delivers it again.

    Records after a failure are still handled: Lambda restarts from the lowest failed sequence
    number, and handling is idempotent, so a handoff behind a failing one is not held up.
    A record is not started with less than `min_seconds` left before `deadline`: it is named
    too, untouched, so the next delivery takes it at once instead of the invocation timing out.
    """
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise NotAStreamEvent("not a DynamoDB stream event: it has no Records list")
    failures = []
    for index, record in enumerate(records):
        if deadline is not None and deadline.remaining() < min_seconds:
            log.warning("out of time: %d record(s) handed back to the stream unstarted", len(records) - index)
            failures += [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in records[index:]]
            break
        try:
            handle(record)
        except Exception as exc:
            on_failure(record, exc)
            failures.append({"itemIdentifier": record["dynamodb"]["SequenceNumber"]})
    return {"batchItemFailures": failures}
