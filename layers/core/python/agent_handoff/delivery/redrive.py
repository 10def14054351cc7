"""Redrive: handoffs that failed to reach Studio are delivered again once the cause is fixed.

Two kinds of message land in the dead-letter queue:
- `handoff.failed`, written by the dispatcher with the reason and the payload;
- Lambda's own failure records for a stream batch it gave up on (they name sequence numbers,
  not handoffs), which are matched by looking for handoff records left pending.

Each redriven handoff becomes a new record (`<original id>.r<time>`) whose stream INSERT goes
through the normal dispatcher, and the original is marked `redriven` so that no dispatcher
picks it up again; Studio's one-active-execution rule still keeps a contact from getting two
executions. A message is deleted only after its handoff was written again, so a crash midway
loses nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..storage.records import HandoffRecord
from ..storage.session_store import SessionStore

log = logging.getLogger(__name__)

STUCK_AFTER_SECONDS = 15 * 60


@dataclass
class RedriveReport:
    redriven: list[str] = field(default_factory=list)  # original handoff ids
    skipped: list[str] = field(default_factory=list)  # messages that named nothing to redrive
    messages: int = 0


class Redriver:
    def __init__(
        self, store: SessionStore, sqs: Any, queue_url: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._sqs = sqs
        self._queue_url = queue_url
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
                body = _json(message.get("Body", ""))
                if body.get("type") == "handoff.failed" and body.get("handoffId"):
                    self._redrive_failed(body, report, dry_run)
                elif "DDBStreamBatchInfo" in body:
                    pass  # the stuck records it stands for are found below
                else:
                    report.skipped.append(message.get("MessageId", "?"))
                    log.warning("dead letter %s is not a handoff; left in the queue", message.get("MessageId"))
                    continue
                if dry_run:
                    peeked.append(message["ReceiptHandle"])
                else:
                    self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
        for handle in peeked:
            # Visible again at once: a dry run leaves the queue exactly as it found it.
            self._sqs.change_message_visibility(QueueUrl=self._queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
        self._redrive_stuck(report, dry_run)
        return report

    def _redrive_failed(self, body: dict[str, Any], report: RedriveReport, dry_run: bool) -> None:
        original = self._store.get_handoff(body["handoffId"])
        record = original or HandoffRecord(
            handoff_id=body["handoffId"],
            channel=body.get("channel", "sms"),
            conversation_key="",
            to=body.get("to", ""),
            from_=body.get("from", ""),
            payload_json=body.get("payload", ""),
        )
        self._write_again(record, report, dry_run)

    def _redrive_stuck(self, report: RedriveReport, dry_run: bool) -> None:
        before = int(self._clock()) - STUCK_AFTER_SECONDS
        for record in self._store.undelivered_handoffs(created_before=before):
            if record.handoff_id not in report.redriven:
                self._write_again(record, report, dry_run)

    def _write_again(self, record: HandoffRecord, report: RedriveReport, dry_run: bool) -> None:
        report.redriven.append(record.handoff_id)
        if dry_run:
            return
        now = int(self._clock())
        again = record._replace(handoff_id=f"{record.handoff_id.split('.r')[0]}.r{now}", status="pending")
        self._store.insert_handoff(again, now=now)
        self._store.finish_handoff(
            record.handoff_id, status="redriven", outcome="redriven", error=f"redriven as {again.handoff_id}", now=now
        )
        log.info("handoff %s redriven as %s", record.handoff_id, again.handoff_id)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
