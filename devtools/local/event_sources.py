"""Lambda's DynamoDB Streams event source mapping, as a loop over moto's stream.

It keeps the template's settings: FilterCriteria, BatchSize, partial batch responses (the
failed record and everything after it on the shard is retried), MaximumRetryAttempts, and
the OnFailure destination, which gets Lambda's record of the batch that could not be processed
(`stream_failure_record`: it names the shard and the range of sequence numbers, not the records).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from devtools.local.lambdas import LambdaContext
from devtools.local.streams import StreamReader, filter_patterns, lambda_event, matches

log = logging.getLogger("devtools.local.event_sources")


class StreamPoller:
    def __init__(
        self,
        *,
        function: str,
        handler: Callable[[dict, Any], Any],
        streams_client: Any,
        stream_arn: str,
        properties: dict[str, Any],
        on_failure: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.25,
        timeout_seconds: float | None = None,
    ) -> None:
        self._function = function
        self._handler = handler
        self._reader = StreamReader(streams_client, stream_arn)
        self._arn = stream_arn
        self._patterns = filter_patterns(properties)
        self._batch_size = int(properties.get("BatchSize", 100))
        self._max_retries = int(properties.get("MaximumRetryAttempts", -1))
        self._on_failure = on_failure
        self._interval = interval
        self._timeout = timeout_seconds  # the function's Timeout: each invocation's context counts down from it
        self._pending: list[dict[str, Any]] = []
        self._attempts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{function}", daemon=True)
        self.delivered = 0

    def start(self) -> StreamPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("stream poll for %s failed", self._function)
            self._stop.wait(self._interval)

    def poll_once(self) -> None:
        self._pending += [
            r for r in self._reader.poll() if not self._patterns or any(matches(p, r) for p in self._patterns)
        ]
        while self._pending and not self._stop.is_set():
            batch = self._pending[: self._batch_size]
            failed_from = self._invoke(batch)
            if failed_from is None:
                self._pending = self._pending[len(batch) :]
                self.delivered += len(batch)
                self._attempts = 0
                continue
            self._attempts += 1
            if 0 <= self._max_retries < self._attempts:
                self._give_up(batch[failed_from:])
                self._pending = self._pending[len(batch) :]
                self._attempts = 0
                continue
            # Retry from the first failed record on, as Lambda does for stream sources.
            self._pending = self._pending[failed_from:]
            return

    def _invoke(self, batch: list[dict[str, Any]]) -> int | None:
        try:
            context = LambdaContext(function_name=self._function, timeout_seconds=self._timeout)
            result = self._handler(lambda_event(batch, self._arn), context)
        except Exception:
            log.exception("%s raised; the whole batch is retried", self._function)
            return 0
        failures = (result or {}).get("batchItemFailures") or []
        if not failures:
            return None
        sequences = [r["dynamodb"]["SequenceNumber"] for r in batch]
        failed = {f["itemIdentifier"] for f in failures}
        return min(i for i, seq in enumerate(sequences) if seq in failed)

    def _give_up(self, records: list[dict[str, Any]]) -> None:
        log.error("%s: %d record(s) out of retries, sent to the failure destination", self._function, len(records))
        if self._on_failure is not None:
            first = records[0]["dynamodb"]["SequenceNumber"]
            self._on_failure(
                stream_failure_record(
                    function=self._function,
                    stream_arn=self._arn,
                    shard_id=self._reader.shard_of.get(first, ""),
                    records=records,
                    invocations=self._attempts,
                )
            )


def stream_failure_record(
    *, function: str, stream_arn: str, shard_id: str, records: list[dict[str, Any]], invocations: int
) -> dict[str, Any]:
    """What Lambda sends an SQS OnFailure destination for a DynamoDB stream batch it gave up on.

    The shape of AWS's "services-dynamodb-errors" page (Powertools models it as
    DynamoDBStreamLambdaOnFailureDestinationModel): metadata only, never the records themselves.
    """

    def arrival(record: dict[str, Any]) -> str:
        created = record["dynamodb"].get("ApproximateCreationDateTime")
        moment = created if isinstance(created, datetime) else datetime.fromtimestamp(float(created or 0), UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invocations,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": arrival(records[0]),
            "approximateArrivalOfLastRecord": arrival(records[-1]),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }
