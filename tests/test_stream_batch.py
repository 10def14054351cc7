"""Partial batch responses: exactly the records that raised go back to Lambda, by sequence number."""

from __future__ import annotations

import pytest

from agent_handoff.delivery.stream_batch import NotAStreamEvent, new_image_text, process_stream_batch


def record(sequence: str, handoff_id: str | None) -> dict:
    image = {"kind": {"S": "handoff"}} | ({"handoffId": {"S": handoff_id}} if handoff_id else {})
    return {"eventID": sequence, "dynamodb": {"SequenceNumber": sequence, "NewImage": image}}


def test_failures_are_named_and_later_records_still_handled():
    handled, failed = [], []

    def handle(r):
        handled.append(new_image_text(r, "handoffId"))
        if new_image_text(r, "handoffId") == "bad":
            raise RuntimeError("studio down")

    event = {"Records": [record("1", "a"), record("2", "bad"), record("3", "c")]}
    result = process_stream_batch(event, handle, lambda r, exc: failed.append((r["eventID"], str(exc))))

    assert result == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert handled == ["a", "bad", "c"] and failed == [("2", "studio down")]


def test_an_empty_batch_has_no_failures():
    assert process_stream_batch({"Records": []}, pytest.fail, pytest.fail) == {"batchItemFailures": []}


@pytest.mark.parametrize("event", [{}, {"Records": "x"}, [], None])
def test_an_event_that_is_not_a_stream_batch_is_refused_by_name(event):
    with pytest.raises(NotAStreamEvent, match="no Records list"):
        process_stream_batch(event, pytest.fail, pytest.fail)


@pytest.mark.parametrize(
    "r", [{}, {"dynamodb": {}}, {"dynamodb": {"NewImage": {"handoffId": {"N": "1"}}}}, record("1", None)]
)
def test_a_missing_or_non_string_attribute_reads_as_none(r):
    assert new_image_text(r, "handoffId") is None
