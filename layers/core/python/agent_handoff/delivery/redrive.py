"""Redrive: handoffs that failed to reach Studio are delivered again once the cause is fixed.

Two kinds of message land in the dead-letter queue:
- `handoff.failed`, written by the dispatcher with the reason and the payload;
- Lambda's OnFailure records for a stream batch it gave up on. They name no handoff: their
  `DDBStreamBatchInfo` gives the stream, the shard and the range of sequence numbers, and the
  handoff records are read back from the stream (GetShardIterator AT_SEQUENCE_NUMBER, then
  GetRecords to the end of the range). Once the stream has dropped them (it keeps 24 hours),
  every handoff still owed is found in the PromisesIndex instead.

Each undelivered handoff becomes a new record (`<original id>.r<time>`), written in one
transaction with the original's move to `redriven`, whatever the original's age; the new
record knows its original (`redrivenFrom`, when it was first promised, whether it may already
have been posted), so its failure lifts the original's hold and its dispatcher looks for an
execution the original started before posting. Its stream INSERT goes through the normal
dispatcher, which never ends or doubles an execution that serves a newer handoff.

A failure whose contact has had a newer handoff delivered since (the customer asked again and
reached a person) is not redriven: it is reported as superseded and its message deleted. That
needs the flow SID (`flow_sid`, the stack's StudioHandoffFlowSid); without it the dispatcher
settles such a copy as superseded instead.

A message is deleted only after every handoff it stands for was written again (or settled), so
a crash midway loses nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..storage.dynamo import plain_item
from ..storage.records import HandoffRecord
from ..storage.session_store import SessionStore
from .busy_contact import newer_delivery

log = logging.getLogger(__name__)

# What DynamoDB Streams answers for records it no longer has (or a shard that is gone).
AGED_OUT = {"TrimmedDataAccessException", "ResourceNotFoundException", "ExpiredIteratorException"}
ALL_PROMISES = 2**62  # a promiseDue beyond any real one: every handoff still owed
MAX_EMPTY_PAGES = 3


@dataclass
class RedriveReport:
    redriven: list[str] = field(default_factory=list)  # original handoff ids
    settled: list[str] = field(default_factory=list)  # named by a message, but delivered or redriven already
    superseded: list[str] = field(default_factory=list)  # a newer handoff of the contact reached a person since
    skipped: list[str] = field(default_factory=list)  # messages left in the queue, and why
    from_index: int = 0  # stream batches whose records had aged out: found through the PromisesIndex
    messages: int = 0


class Redriver:
    def __init__(
        self,
        store: SessionStore,
        sqs: Any,
        queue_url: str,
        *,
        streams: Any = None,
        flow_sid: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sqs = sqs
        self._queue_url = queue_url
        self._streams = streams
        self._flow_sid = flow_sid
        self._clock = clock

    def run(self, *, dry_run: bool = False, max_messages: int = 1000) -> RedriveReport:
        report = RedriveReport()
        peeked: list[str] = []
        while report.messages < max_messages:
            batch = self._sqs.receive_message(
                QueueUrl=self._queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                report.messages += 1
                message_id = message.get("MessageId", "?")
                body = _json(message.get("Body", ""))
                if body.get("type") == "handoff.failed" and body.get("handoffId"):
                    self._redrive_failed(body, report, dry_run)
                elif isinstance(body.get("DDBStreamBatchInfo"), dict):
                    problem = self._redrive_batch(body["DDBStreamBatchInfo"], report, dry_run)
                    if problem:
                        report.skipped.append(f"{message_id} ({problem})")
                        log.warning("stream batch %s not redriven: %s; left in the queue", message_id, problem)
                        peeked.append(message["ReceiptHandle"])
                        continue
                else:
                    report.skipped.append(f"{message_id} (not a handoff)")
                    log.warning("dead letter %s is not a handoff; left in the queue", message_id)
                    peeked.append(message["ReceiptHandle"])
                    continue
                if dry_run:
                    peeked.append(message["ReceiptHandle"])
                else:
                    self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
        for handle in peeked:
            # Visible again at once: what was not redriven stays for the operator, as it was.
            self._sqs.change_message_visibility(QueueUrl=self._queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
        return report

    def _redrive_failed(self, body: dict[str, Any], report: RedriveReport, dry_run: bool) -> None:
        original = self._store.get_handoff(body["handoffId"])
        if original is not None and original.status in ("delivered", "redriven", "superseded"):
            report.settled.append(original.handoff_id)
            return
        created = body.get("createdAt")
        record = original or HandoffRecord(
            handoff_id=body["handoffId"],
            channel=body.get("channel", "sms"),
            conversation_key="",
            to=body.get("to", ""),
            from_=body.get("from", ""),
            payload_json=body.get("payload", ""),
            created_at=created if isinstance(created, int) else 0,
        )
        self._write_again(record, report, dry_run, original_exists=original is not None)

    def _redrive_batch(self, info: dict[str, Any], report: RedriveReport, dry_run: bool) -> str:
        """Redrive what a stream batch held; a reason when it cannot be read (the message then stays)."""
        try:
            handoff_ids = self._batch_handoffs(info)
        except Exception as exc:
            return f"the stream could not be read: {_error_code(exc) or type(exc).__name__}"
        if handoff_ids is None:
            report.from_index += 1
            handoff_ids = self._store.handoff_promises(due_before=ALL_PROMISES, limit=10_000)
        for handoff_id in handoff_ids:
            record = self._store.get_handoff(handoff_id)
            if record is not None and record.undelivered:
                self._write_again(record, report, dry_run, original_exists=True)
            elif record is not None and record.status != "failed":  # a failed one has its own dead letter
                report.settled.append(handoff_id)
        return ""

    def _batch_handoffs(self, info: dict[str, Any]) -> list[str] | None:
        """Handoff ids in the batch's sequence range; None when the stream no longer holds it."""
        if self._streams is None or not all(
            info.get(key) for key in ("streamArn", "shardId", "startSequenceNumber", "endSequenceNumber")
        ):
            return None
        try:
            iterator = self._streams.get_shard_iterator(
                StreamArn=info["streamArn"],
                ShardId=info["shardId"],
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=info["startSequenceNumber"],
            )["ShardIterator"]
            end = int(info["endSequenceNumber"])
            ids: list[str] = []
            empty = 0
            while iterator and empty < MAX_EMPTY_PAGES:
                page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                records = page.get("Records", [])
                for record in records:
                    if int(record["dynamodb"]["SequenceNumber"]) > end:
                        return ids
                    image = plain_item((record.get("dynamodb") or {}).get("NewImage") or {})
                    if record.get("eventName") == "INSERT" and image.get("kind") == "handoff":
                        ids.append(str(image["handoffId"]))
                empty = 0 if records else empty + 1
                iterator = page.get("NextShardIterator")
            return ids
        except Exception as exc:
            if _error_code(exc) in AGED_OUT:
                return None
            raise

    def _write_again(
        self, record: HandoffRecord, report: RedriveReport, dry_run: bool, *, original_exists: bool
    ) -> None:
        newer = newer_delivery(self._store, self._flow_sid, record) if self._flow_sid else None
        if newer is not None:
            log.info("handoff %s not redriven: handoff %s reached a person since", record.handoff_id, newer.handoff_id)
            report.superseded.append(record.handoff_id)
            return
        if dry_run:
            report.redriven.append(record.handoff_id)
            return
        now = int(self._clock())
        root = record.root_id.split(".r")[0]
        again = record._replace(
            handoff_id=f"{root}.r{now}",
            status="pending",
            redriven_from=root,
            origin_created_at=record.root_created_at or now,
            # A dispatcher that died holding the original may have posted it.
            maybe_sent=record.maybe_sent or record.status == "dispatching",
            lease_token="",
        )
        if original_exists:
            written = self._store.redrive_handoff(record.handoff_id, again, now=now)
        else:  # its record expired: the dead letter's copy is all there is
            written = self._store.insert_handoff(again, now=now)
        if not written:
            report.settled.append(record.handoff_id)  # another redrive, or a dispatcher, got there first
            return
        report.redriven.append(record.handoff_id)
        log.info("handoff %s redriven as %s", record.handoff_id, again.handoff_id)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_code(exc: Exception) -> str:
    """An AWS error code without importing botocore (this module runs in Lambda's core layer too)."""
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code", ""))
