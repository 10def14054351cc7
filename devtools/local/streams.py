"""Reads a DynamoDB stream (moto's or real) and shapes Lambda's event source mapping events.

Lambda filters stream records with the mapping's FilterCriteria before invoking; `matches`
applies the template's own patterns (exact-value lists, which is all the template uses).
"""

from __future__ import annotations

import json
from typing import Any


def matches(pattern: dict[str, Any], record: dict[str, Any]) -> bool:
    for key, expected in pattern.items():
        if key not in record:
            return False
        actual = record[key]
        if isinstance(expected, dict):
            if not isinstance(actual, dict) or not matches(expected, actual):
                return False
        elif isinstance(expected, list):
            if actual not in expected:
                return False
        else:
            raise ValueError(f"unsupported filter pattern at {key!r}")
    return True


def filter_patterns(event_properties: dict[str, Any]) -> list[dict[str, Any]]:
    filters = (event_properties.get("FilterCriteria") or {}).get("Filters") or []
    return [json.loads(f["Pattern"]) for f in filters]


class StreamReader:
    """Follows every shard of a table's stream from its start (TRIM_HORIZON).

    Each poll asks for a fresh iterator after the last record seen, rather than following
    NextShardIterator: moto replaces a table's stream shard when it rolls back a cancelled
    transaction, and an old iterator then never sees another record.
    """

    def __init__(self, streams_client: Any, stream_arn: str) -> None:
        self._client = streams_client
        self._arn = stream_arn
        self._last_sequence: dict[str, str] = {}
        self.shard_of: dict[str, str] = {}  # sequence number -> shard id, for failure records

    def poll(self, limit: int = 100) -> list[dict[str, Any]]:
        shards = self._client.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]
        records: list[dict[str, Any]] = []
        for shard in shards:
            shard_id = shard["ShardId"]
            position: dict[str, str] = {"ShardIteratorType": "TRIM_HORIZON"}
            if shard_id in self._last_sequence:
                position = {
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "SequenceNumber": self._last_sequence[shard_id],
                }
            iterator = self._client.get_shard_iterator(StreamArn=self._arn, ShardId=shard_id, **position)[
                "ShardIterator"
            ]
            batch = self._client.get_records(ShardIterator=iterator, Limit=limit).get("Records", [])
            if batch:
                self._last_sequence[shard_id] = batch[-1]["dynamodb"]["SequenceNumber"]
            self.shard_of.update((r["dynamodb"]["SequenceNumber"], shard_id) for r in batch)
            records.extend(batch)
        return records


def lambda_event(records: list[dict[str, Any]], stream_arn: str) -> dict[str, Any]:
    return {"Records": [{**_jsonable(r), "eventSourceARN": stream_arn} for r in records]}


def _jsonable(value: Any) -> Any:
    """boto3 returns datetimes in stream records; Lambda's event carries epoch seconds."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "timestamp"):
        return int(value.timestamp())
    return value
