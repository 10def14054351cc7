"""The dispatcher works to its runtime's deadline (issue #12 item 8).

Before: 4 attempts x (3 s connect + 10 s read) plus Retry-After sleeps per record, against a
60 s timeout and 10 records a batch; the runtime killed the invocation holding leases of 120 s,
every stream retry answered RetryLater, and the batch ended in the dead-letter queue. Now each
record gets what remains (at most RECORD_BUDGET_SECONDS), records not finished in time go back
to the stream with their lease released, and a lease never outlasts its record's budget.
"""

from __future__ import annotations

import time

import pytest

from agent_handoff import wiring
from agent_handoff.delivery.dispatch import MIN_RECORD_SECONDS, RECORD_BUDGET_SECONDS, RESERVE_SECONDS, SETTLE_SECONDS
from conftest import load_handler
from devtools.fakes.studio_recorder import ScriptedFault
from devtools.local.lambdas import LambdaContext
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params
from devtools.template import resource
from streams import Outbox

sms_app = load_handler("inbound_sms")
dispatch_app = load_handler("handoff_dispatch")
CUSTOMERS = [f"+1415555040{n}" for n in range(5)]


def hand_off(customers):
    for customer in customers:
        params = sms_params(account_sid=sample.ACCOUNT_SID, body="I need a human", customer=customer)
        sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), LambdaContext())


def runtime(seconds_of_work: float) -> LambdaContext:
    """A context whose deadline leaves `seconds_of_work` after the dispatcher's reserve."""
    return LambdaContext(function_name="dispatch", timeout_seconds=RESERVE_SECONDS + seconds_of_work)


def by_customer(aws):
    return {h["to"]: h for h in aws.items("HANDOFF#")}


def sequence(event, customer):
    return next(
        r["dynamodb"]["SequenceNumber"] for r in event["Records"] if r["dynamodb"]["NewImage"]["to"]["S"] == customer
    )


def test_a_batch_is_worked_to_the_deadline_and_what_is_left_goes_back_released(aws, studio):
    hand_off(CUSTOMERS)
    event = Outbox(aws.dynamodb).next_event()
    assert len(event["Records"]) == 5
    studio.answer_delay = 2.5  # Studio creates each execution at once but answers 2.5 s later

    started = time.monotonic()
    result = dispatch_app.handler(event, runtime(4.8))
    elapsed = time.monotonic() - started

    assert elapsed < 4.8 + 1.0  # returned inside its runtime, with the reserve to spare
    handed_back = [f["itemIdentifier"] for f in result["batchItemFailures"]]
    assert handed_back == [sequence(event, c) for c in CUSTOMERS[1:]]
    records = by_customer(aws)
    assert records[CUSTOMERS[0]]["status"] == "delivered"
    # The second was posted and its answer cut off by the deadline: back to pending, lease released.
    assert records[CUSTOMERS[1]]["status"] == "pending" and "leaseUntil" not in records[CUSTOMERS[1]]
    assert records[CUSTOMERS[1]]["deliveries"] == 1 and "timed out" in records[CUSTOMERS[1]]["lastError"]
    # The rest were never started: untouched, free for the next delivery.
    assert [records[c]["deliveries"] for c in CUSTOMERS[2:]] == [0, 0, 0]

    studio.answer_delay = 0
    assert dispatch_app.handler(event, runtime(30)) == {"batchItemFailures": []}  # Lambda's retry

    records = by_customer(aws)
    assert {h["status"] for h in records.values()} == {"delivered"}
    assert records[CUSTOMERS[1]]["outcome"] == "found"  # its lost answer's execution, found before any post
    assert sorted(r.to for r in studio.created) == sorted(CUSTOMERS)  # exactly one each
    assert [r.status for r in studio.requests if r.to == CUSTOMERS[1]] == [201]  # never posted again
    assert aws.dead_letters() == []


def test_a_retry_after_longer_than_what_remains_hands_the_record_back_at_once(aws, studio):
    hand_off(CUSTOMERS[:1])
    event = Outbox(aws.dynamodb).next_event()
    studio.fail_next(ScriptedFault(429, {"code": 20429, "message": "Too Many Requests"}, headers={"Retry-After": "8"}))

    started = time.monotonic()
    result = dispatch_app.handler(event, runtime(5))

    assert time.monotonic() - started < 2  # no 8 s sleep the runtime would have killed
    assert len(result["batchItemFailures"]) == 1
    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "pending" and "429" in record["lastError"] and "deadline" in record["lastError"]


def test_a_slow_studio_costs_one_record_its_budget_not_the_whole_invocation(aws, studio, monkeypatch):
    monkeypatch.setattr("agent_handoff.delivery.dispatch.RECORD_BUDGET_SECONDS", 1.5)  # its budget: 1.5 s
    hand_off(CUSTOMERS[:2])
    event = Outbox(aws.dynamodb).next_event()
    studio.fail_next(ScriptedFault(201, {"sid": "FN" + "1" * 32}, delay=5))  # the first POST hangs

    started = time.monotonic()
    dispatch_app.handler(event, runtime(20))

    assert time.monotonic() - started < 1.5 + 2.0
    assert by_customer(aws)[CUSTOMERS[1]]["status"] == "delivered"  # the second still got its turn


class Killed(BaseException):
    """The runtime ending an invocation at its timeout: no `except Exception` sees it."""


def test_a_killed_dispatcher_holds_its_record_one_budget_and_the_retry_delivers_it_once(aws, studio, monkeypatch):
    hand_off(CUSTOMERS[:1])
    event = Outbox(aws.dynamodb).next_event()
    http = wiring.studio_client()._http
    real = http.request

    def post_then_die(method, url, **kwargs):
        real(method, url, **kwargs)
        raise Killed("timed out after the POST reached Studio")

    monkeypatch.setattr(http, "request", post_then_die)
    with pytest.raises(Killed):
        dispatch_app.handler(event, runtime(60))
    monkeypatch.setattr(http, "request", real)

    held = aws.items("HANDOFF#")[0]
    assert held["status"] == "dispatching"
    assert held["leaseUntil"] - time.time() <= RECORD_BUDGET_SECONDS + SETTLE_SECONDS + 1
    assert held["promiseDue"] == held["leaseUntil"]  # the watchdog looks once the lease is over

    # Lambda retries the batch at once; the dispatcher waits out the dead invocation's lease.
    dispatcher = wiring.dispatcher()
    waited = []
    monkeypatch.setattr(dispatcher, "_sleep", waited.append)
    monkeypatch.setattr(dispatcher, "_clock", lambda: time.time() + sum(waited))
    assert dispatch_app.handler(event, runtime(60)) == {"batchItemFailures": []}

    assert 0 < sum(waited) <= RECORD_BUDGET_SECONDS + SETTLE_SECONDS + 1
    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "delivered" and record["outcome"] == "found"
    assert len(studio.created) == 1 and len(studio.requests) == 1 and "promise" not in record


def test_a_lease_that_outlives_the_deadline_is_left_to_the_stream(aws, studio, monkeypatch):
    hand_off(CUSTOMERS[:1])
    event = Outbox(aws.dynamodb).next_event()
    handoff_id = event["Records"][0]["dynamodb"]["NewImage"]["handoffId"]["S"]
    wiring.session_store().claim_handoff(handoff_id, now=int(time.time()), lease_seconds=30)  # alive elsewhere

    started = time.monotonic()
    result = dispatch_app.handler(event, runtime(5))

    assert time.monotonic() - started < 1 and len(result["batchItemFailures"]) == 1
    assert studio.requests == []


def test_the_lease_is_the_records_budget_plus_its_settling(aws):
    from agent_handoff.deadline import Deadline

    hand_off(CUSTOMERS[:1])
    handoff_id = aws.items("HANDOFF#")[0]["handoffId"]
    dispatcher = wiring.dispatcher()
    now = int(time.time())

    record = dispatcher._claim(handoff_id, Deadline.after(100))

    assert record.lease_until - now in range(
        int(RECORD_BUDGET_SECONDS) + SETTLE_SECONDS, int(RECORD_BUDGET_SECONDS) + SETTLE_SECONDS + 2
    )


def test_the_template_gives_a_whole_batch_its_budget():
    props = resource("HandoffDispatchFunction")["Properties"]
    mapping = props["Events"]["HandoffOutbox"]["Properties"]
    one_dead_lease = RECORD_BUDGET_SECONDS + SETTLE_SECONDS  # only the record a killed invocation was on
    assert mapping["BatchSize"] * RECORD_BUDGET_SECONDS + one_dead_lease + RESERVE_SECONDS <= props["Timeout"]
    assert MIN_RECORD_SECONDS < RECORD_BUDGET_SECONDS
    from agent_handoff.config import Settings

    # A record is left to the watchdog before Lambda's retries run out on its batch.
    assert Settings().dispatch_max_deliveries < mapping["MaximumRetryAttempts"]
