"""Adversarial review of issue #12, SMS and delivery side: promises that still break.

Each test asserts what the texter (or the operator) experiences, with faults injected at the
boundaries the issue names: the AWS SDK (moto's client, raising ClientError), the Studio
recorder (slow answers, a flow that finishes), and `make redrive` on a stream-batch failure.
They fail on the current main; each docstring says why.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from agent_handoff import wiring
from agent_handoff.deadline import Deadline
from agent_handoff.delivery.redrive import Redriver
from conftest import load_handler
from devtools.fakes.studio_recorder import ScriptedFault
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params
from streams import Outbox

sms_app = load_handler("inbound_sms")
dispatch_app = load_handler("handoff_dispatch")

NOT_FOUND = ScriptedFault(404, {"code": 20404, "message": "The requested resource was not found"})


def webhook(body: str, customer: str = sample.CUSTOMER_NUMBER, sid: str | None = None) -> dict:
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=body, customer=customer, sid=sid)
    return http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN)


def texted(response) -> str | None:
    """What the texter receives: the <Message> of a 200 answer. A 5xx reaches nobody (Twilio does
    not retry it, DESIGN.md "Known pitfalls"), so it is what the texter gets: nothing."""
    if response["statusCode"] != 200:
        return None
    messages = ET.fromstring(response["body"]).findall("Message")
    return messages[0].text if messages else None


def drain(outbox, lambda_context):
    while (event := outbox.next_event()) is not None:
        dispatch_app.handler(event, lambda_context)


# -- 1. a stream-batch redrive whose copy fails leaves the texter on hold, in silence -------------


def test_a_redriven_stream_batch_handoff_that_fails_again_lifts_the_hold(aws, studio, twilio_api, lambda_context):
    """The dispatcher died holding the lease and the stream's retries ran out: Lambda's
    stream-batch failure record is in the dead-letter queue. The operator runs `make redrive`
    (README runbook) before the cause is fixed (or the flow is still wrong: a 404). The
    redriven copy `<id>.r<time>` fails: dead letter, DispatchFailures, and the customer is texted
    "Sorry, we couldn't reach a member of our team". The customer answers that text, and gets
    silence for the rest of the 24 h hold: the hold still names the original handoff id, and
    `lift_hold_after_failure` only lifts a hold that names the failing record's id. The
    original was moved to `redriven` (its promise removed), so the watchdog never lifts it either.
    """
    customer = "+14155550401"
    assert "follow up" in texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    outbox = Outbox(aws.dynamodb)
    event = outbox.next_event()
    handoff_id = event["Records"][0]["dynamodb"]["NewImage"]["handoffId"]["S"]
    # A dispatcher took the record and was killed; Lambda gave up on the batch (issue #12 item 8/9).
    wiring.session_store().claim_handoff(handoff_id, now=int(time.time()), lease_seconds=60)
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(outbox.failure_record(event)))

    report = Redriver(wiring.session_store(), aws.sqs, aws.queue_url, streams=boto3.client("dynamodbstreams")).run()
    assert report.redriven == [handoff_id]
    studio.fail_next(NOT_FOUND)  # the redriven copy fails permanently
    drain(outbox, lambda_context)

    (copy,) = [h for h in aws.items("HANDOFF#") if h["handoffId"] != handoff_id]
    assert copy["status"] == "failed"  # dead-lettered, alarmed, the customer texted "nobody is coming"
    assert any(m["to"] == customer for m in twilio_api.messages)
    wiring.watchdog().run(Deadline.after(20))  # nor does the watchdog find anything still owed

    answer = texted(sms_app.handler(webhook("What are your opening hours?", customer), lambda_context))

    conversation = [c for c in aws.items("CONV#") if c["customer"] == customer][0]
    assert answer is not None, (
        "told nobody is coming, the customer's next message gets silence: the hold of "
        f"{conversation['hold']['handoffId']!r} is still on until {conversation['hold']['until']}"
    )


# -- 2. a lost Studio answer, then a finished flow: the retry starts a second execution ---------


def test_a_lost_studio_answer_never_becomes_a_second_execution(aws, studio, lambda_context, monkeypatch):
    """"Studio slow: a delay; exactly one execution" (README). Studio acts on the POST but its
    answer comes after the client's timeout; the next attempts get 503 (Studio under strain), so
    the record goes back to the stream, `pending`, as if nothing had been sent. By the time it is
    delivered again the first execution has finished (the agent took the Flex task and closed it,
    or the flow simply ended after Send to Flex). The retry POSTs blindly: no 409 any more, so
    Studio starts a second execution, and a second agent contacts the customer about the same
    handoff. Nothing checks Studio for the execution a possibly-sent POST may have created
    before posting again (`dispatch._deliver` only asks on a 409).
    """
    customer = "+14155550402"
    assert "follow up" in texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    studio.answer_delay = 1.5
    wiring.studio_client()._http._read = 0.5  # the client gives up on the (slow) answer first
    scripted = []

    def strained_after_first_post(seconds):
        if not scripted:  # after the first attempt: Studio answers 503 for the rest of this delivery
            scripted.append(True)
            studio.fail_next(*[ScriptedFault(503, {"code": 20503, "message": "Service Unavailable"})] * 3)

    wiring.studio_client()._sleep = strained_after_first_post
    outbox = Outbox(aws.dynamodb)
    event = outbox.next_event()

    first = dispatch_app.handler(event, lambda_context)
    assert len(first["batchItemFailures"]) == 1, [(r.status, r.sid) for r in studio.requests]  # handed back to the stream: "transient"
    assert len(studio.created) == 1  # ...but Studio did start an execution
    studio.answer_delay = 0.0
    studio.end_execution(customer)  # that execution's flow finished meanwhile

    dispatch_app.handler(event, lambda_context)  # Lambda delivers the record again

    handoff_id = event["Records"][0]["dynamodb"]["NewImage"]["handoffId"]["S"]
    assert len([r for r in studio.created if r.to == customer]) == 1, (
        f"handoff {handoff_id} started {len(studio.created)} Studio executions: "
        + ", ".join(r.sid for r in studio.created)
    )


# -- 3. one transient DynamoDB fault outside the commit: a 500, which Twilio never retries ---------


def throttled(operation: str) -> ClientError:
    """What boto3 raises once its own retries are spent on a throttled request."""
    return ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate of requests exceeds the allowed throughput."}},
        operation,
    )


def once(monkeypatch, client, operation: str, fault: Exception, when) -> list:
    """The first call of `operation` whose arguments match `when` raises `fault`; the rest reach moto."""
    real, raised = getattr(client, operation), []

    def patched(**kwargs):
        if not raised and when(kwargs):
            raised.append(kwargs)
            raise fault
        return real(**kwargs)

    monkeypatch.setattr(client, operation, patched)
    return raised


def _key(kwargs) -> str:
    return kwargs.get("Key", {}).get("pk", {}).get("S", "")


@pytest.mark.parametrize(
    "operation, fault, when",
    [
        ("get_item", throttled("GetItem"), lambda kw: _key(kw).startswith("CONV#")),
        ("update_item", throttled("UpdateItem"), lambda kw: _key(kw).startswith("MSG#")),
        (
            "transact_write_items",
            ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
            lambda kw: True,
        ),
    ],
    ids=["conversation-read-throttled", "claim-throttled", "commit-read-timeout"],
)
def test_one_transient_store_fault_does_not_leave_a_texter_who_asked_for_a_person_in_silence(
    aws, lambda_context, monkeypatch, operation, fault, when
):
    """Issue #12 item 3 fixed the commit's *cancelled* transaction; the same class of fault one
    call earlier is still a 500. With 19 s of the function left, a single throttle that outlived
    the SDK's retries on the conversation's GetItem or the claim's UpdateItem (or a read timeout
    on the commit) answers 500 (`webhook_handler`: StoreError -> server_error). Twilio does not
    retry a 5xx (DESIGN.md "Known pitfalls"): the texter who wrote "I need a human" gets no
    answer and no handoff, ever. Nothing retries the read, the claim or the commit with the time
    left (only `StoreBusy` from a cancelled transaction is), and nothing answers with at least an
    apology instead of a 500.
    """
    customer = "+14155550403"
    raised = once(monkeypatch, wiring.session_store()._client, operation, fault, when)

    response = sms_app.handler(webhook("I need a human", customer), lambda_context)

    assert raised, "the fault was not injected"
    handoffs = [h for h in aws.items("HANDOFF#") if h["to"] == customer]
    assert texted(response) is not None, (
        f"HTTP {response['statusCode']} to Twilio after one {type(fault).__name__} on {operation}: "
        f"the texter gets nothing and {len(handoffs)} handoff(s) exist"
    )
    assert "follow up" in texted(response) and len(handoffs) == 1


def test_a_handoff_studio_did_start_is_not_failed_as_overdue_and_the_customer_told_nobody_is_coming(
    aws, studio, twilio_api, lambda_context, monkeypatch
):
    """Same root cause as above, other ending. Studio starts the execution but its answer is
    lost; then Studio's create endpoint answers 503 until the delivery budget is spent (reads
    of executions still work). The watchdog fails the handoff `overdue` without asking Studio
    whether the possibly-sent POST started one: dead letter, DispatchFailures, the hold lifted
    and the customer texted "Sorry, we couldn't reach a member of our team", while the execution
    it started is active and a person is on the way. The customer gets both a "nobody is
    coming" text and a person, and the AI answers again alongside that person.
    """
    customer = "+14155550404"
    assert "follow up" in texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    studio.answer_delay = 1.5
    wiring.studio_client()._http._read = 0.5
    unavailable = ScriptedFault(503, {"code": 20503, "message": "Service Unavailable"})

    def strained(seconds):
        studio.answer_delay = 0.0
        studio.fail_next(unavailable, on="create")  # every later create: 503

    wiring.studio_client()._sleep = strained
    event = Outbox(aws.dynamodb).next_event()
    dispatch_app.handler(event, lambda_context)
    assert [r.status for r in studio.requests][:1] == [201]  # the first POST did start an execution
    (record,) = [h for h in aws.items("HANDOFF#") if h["to"] == customer]
    assert record["status"] == "pending"

    # The delivery budget runs out; the watchdog takes the overdue promise.
    aws.dynamodb.update_item(
        TableName=sample.TABLE_NAME,
        Key={"pk": {"S": record["pk"]}},
        UpdateExpression="SET createdAt = :long_ago, promiseDue = :long_ago",
        ExpressionAttributeValues={":long_ago": {"N": str(record["createdAt"] - 3600)}},
    )
    wiring.watchdog().run(Deadline.after(20))

    (record,) = [h for h in aws.items("HANDOFF#") if h["to"] == customer]
    active = [sid for (flow, to), sid in studio.active.items() if to == customer]
    told = [m["body"] for m in twilio_api.messages if m["to"] == customer]
    assert not (record["status"] == "failed" and active), (
        f"handoff {record['outcome']}: dead-lettered and the customer told {told!r}, "
        f"while Studio execution {active} started for it is active"
    )


# -- 4. `make redrive` of an old failure ends the customer's live human conversation --------------


def test_redriving_an_old_failure_does_not_end_the_customers_live_handoff(aws, studio, twilio_api, lambda_context):
    """The runbook: a wrong flow SID (404) failed handoffs for a while; customers were told nobody
    could be reached, and the AI answered again. One of them asked again after the fix: that new
    handoff reached Studio and a person is talking with them now (execution active). The
    operator then runs `make redrive`, as the README says, to deliver what failed. The redriven
    copy of the old handoff meets Studio's 409; `busy_contact` finds the contact's active
    execution carries another conversation, calls it stale, ENDS it, and starts a new execution
    with the old, already-handled reason. The customer's live human conversation is cut and a
    second execution (a second task) is started for them. Redrive claims "Studio's
    one-active-execution rule still keeps a contact from getting two executions".
    """
    customer = "+14155550405"
    studio.fail_next(NOT_FOUND)
    assert "follow up" in texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    outbox = Outbox(aws.dynamodb)
    drain(outbox, lambda_context)
    assert [h["status"] for h in aws.items("HANDOFF#")] == ["failed"]  # dead letter, hold lifted, told

    # The flow is fixed; the customer asks again and reaches a person.
    assert "follow up" in texted(sms_app.handler(webhook("Please, a real person", customer), lambda_context))
    drain(outbox, lambda_context)
    (live,) = studio.created
    assert studio.active[(sample.FLOW_SID, customer)] == live.sid

    # The operator redrives the dead-letter queue.
    report = Redriver(wiring.session_store(), aws.sqs, aws.queue_url, streams=boto3.client("dynamodbstreams")).run()
    drain(outbox, lambda_context)

    assert len(report.redriven) == 1
    assert live.sid not in studio.ended, (
        f"the redrive ended the customer's live execution {live.sid} and started "
        f"{[r.sid for r in studio.created if r.sid != live.sid]} for the old handoff"
    )
    assert len(studio.created) == 1
