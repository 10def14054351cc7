"""Test helper: deliver the table's stream to HandoffDispatchFunction as Lambda would."""

from __future__ import annotations

import boto3

from devtools.local.event_sources import stream_failure_record
from devtools.local.streams import StreamReader, filter_patterns, lambda_event, matches
from devtools.samples import sample
from devtools.template import resource


class Outbox:
    def __init__(self, dynamodb) -> None:
        self.arn = dynamodb.describe_table(TableName=sample.TABLE_NAME)["Table"]["LatestStreamArn"]
        self._reader = StreamReader(boto3.client("dynamodbstreams"), self.arn)
        props = resource("HandoffDispatchFunction")["Properties"]["Events"]["HandoffOutbox"]["Properties"]
        self._patterns = filter_patterns(props)
        self.batch_size = props["BatchSize"]
        self._pending: list[dict] = []

    def next_event(self) -> dict | None:
        """The records the event source mapping would pass on, as one Lambda event."""
        self._pending += [r for r in self._reader.poll() if any(matches(p, r) for p in self._patterns)]
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        return lambda_event(batch, self.arn) if batch else None

    def failure_record(self, event: dict, invocations: int = 21) -> dict:
        """Lambda's OnFailure record for this event's batch, as its SQS destination receives it."""
        records = event["Records"]
        return stream_failure_record(
            function="HandoffDispatchFunction",
            stream_arn=self.arn,
            shard_id=self._reader.shard_of[records[0]["dynamodb"]["SequenceNumber"]],
            records=records,
            invocations=invocations,
        )
