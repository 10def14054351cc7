"""The SMS promise at its edges: a texter told "a person will follow up" gets exactly one person,
or an honest "nobody is coming" with the AI answering again, whatever fails in between.

Regression tests from an adversarial review of issue #12. Faults are injected at the boundaries
where they happen: the AWS SDK (moto's client raising ClientError or a read timeout), the
Studio recorder (late answers, 503s, a flow that finishes, malformed pages), `make redrive`,
and the release endpoint. Each asserts what the texter (or the operator) experiences.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from agent_handoff import wiring
from agent_handoff.agent.turn import TurnOutcome
from agent_handoff.deadline import Deadline
from agent_handoff.delivery.dead_letters import SqsDeadLetters
from agent_handoff.delivery.failure import HandoffFailures
from agent_handoff.delivery.redrive import Redriver
from agent_handoff.delivery.studio import StudioClient
from agent_handoff.errors import ConcurrentUpdate
from conftest import load_handler
from devtools.fakes.studio_recorder import ScriptedFault
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params
from streams import Outbox

sms_app = load_handler("inbound_sms")
dispatch_app = load_handler("handoff_dispatch")
release_app = load_handler("handoff_release")

NOT_FOUND = ScriptedFault(404, {"code": 20404, "message": "The requested resource was not found"})
UNAVAILABLE = ScriptedFault(503, {"code": 20503, "message": "Service Unavailable"})


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


def handoff_of(aws, customer: str) -> dict:
    (record,) = [h for h in aws.items("HANDOFF#") if h["to"] == customer]
    return record


def redriver(aws, **kwargs) -> Redriver:
    return Redriver(wiring.session_store(), aws.sqs, aws.queue_url, streams=boto3.client("dynamodbstreams"), **kwargs)


def release(customer: str, lambda_context) -> dict:
    body = json.dumps({"customer": customer, "agentNumber": sample.AGENT_NUMBER})
    event = http_api_event("/handoff/release", {}, auth_token=None, content_type="application/json", body=body)
    event["headers"]["authorization"] = f"Bearer {sample.RELEASE_TOKEN}"
    response = release_app.handler(event, lambda_context)
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])


def lose_studio_answers(studio) -> None:
    """Studio acts on the next POST but answers after the client's timeout; then every create is a 503."""
    studio.answer_delay = 1.5
    wiring.studio_client()._http._read = 0.5

    def strained(seconds):
        studio.answer_delay = 0.0
        studio.fail_next(UNAVAILABLE, on="create")

    wiring.studio_client()._sleep = strained


def age(aws, record: dict, seconds: int) -> None:
    """The record was written `seconds` ago and its promise is due: the watchdog's business."""
    aws.dynamodb.update_item(
        TableName=sample.TABLE_NAME,
        Key={"pk": {"S": record["pk"]}},
        UpdateExpression="SET createdAt = :then, promiseDue = :then",
        ExpressionAttributeValues={":then": {"N": str(int(time.time()) - seconds)}},
    )


# -- a redriven copy is the same promise as its original ---------------------------------------


def test_a_redriven_stream_batch_handoff_that_fails_again_lifts_the_hold(aws, studio, twilio_api, lambda_context):
    """A dispatcher died holding the lease and the stream's retries ran out: Lambda's stream-batch
    failure record is dead-lettered, and the operator runs `make redrive` before the cause is
    fixed. The redriven copy `<id>.r<time>` fails (a 404): the customer is texted that nobody could
    be reached, so the hold, which names the original id, must be lifted by the copy's failure
    (`redrivenFrom`), or the customer's answer to that text gets silence for 24 hours."""
    customer = "+14155550401"
    assert "follow up" in texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    outbox = Outbox(aws.dynamodb)
    event = outbox.next_event()
    handoff_id = event["Records"][0]["dynamodb"]["NewImage"]["handoffId"]["S"]
    # A dispatcher took the record and was killed; Lambda gave up on the batch (issue #12 item 8/9).
    wiring.session_store().claim_handoff(handoff_id, now=int(time.time()), lease_seconds=60)
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(outbox.failure_record(event)))

    report = redriver(aws).run()
    assert report.redriven == [handoff_id]
    studio.fail_next(NOT_FOUND)  # the redriven copy fails permanently
    drain(outbox, lambda_context)

    (copy,) = [h for h in aws.items("HANDOFF#") if h["handoffId"] != handoff_id]
    assert copy["status"] == "failed" and copy["redrivenFrom"] == handoff_id
    assert any(m["to"] == customer for m in twilio_api.messages)  # told nobody is coming
    wiring.watchdog().run(Deadline.after(20))  # nor does the watchdog find anything still owed

    answer = texted(sms_app.handler(webhook("What are your opening hours?", customer), lambda_context))

    conversation = next(c for c in aws.items("CONV#") if c["customer"] == customer)
    assert answer is not None, (
        "told nobody is coming, the customer's next message gets silence: the hold of "
        f"{conversation['hold']['handoffId']!r} is still on until {conversation['hold']['until']}"
    )
    assert "couldn't reach" in answer and "Monday" in answer


# -- a lost Studio answer: look before posting again or failing --------------------------------


def test_a_lost_studio_answer_never_becomes_a_second_execution(aws, studio, lambda_context):
    """ "Studio slow: a delay; exactly one execution" (README). Studio acts on the POST but answers
    after the client's timeout; the next attempts get 503, so the record goes back to the stream.
    By its next delivery that execution has finished (the agent closed the task): a repost would
    meet no 409 and start a second one. The record remembers it may have been sent, and Studio is
    asked for an execution carrying its handoff id (active or ended) before anything is posted."""
    customer = "+14155550402"
    assert "follow up" in texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    studio.answer_delay = 1.5
    wiring.studio_client()._http._read = 0.5  # the client gives up on the (slow) answer first
    scripted = []

    def strained_after_first_post(seconds):
        if not scripted:  # after the first attempt: Studio answers 503 for the rest of this delivery
            scripted.append(True)
            studio.fail_next(*[UNAVAILABLE] * 3)

    wiring.studio_client()._sleep = strained_after_first_post
    outbox = Outbox(aws.dynamodb)
    event = outbox.next_event()

    first = dispatch_app.handler(event, lambda_context)
    assert len(first["batchItemFailures"]) == 1, [(r.status, r.sid) for r in studio.requests]  # "transient"
    assert len(studio.created) == 1  # ...but Studio did start an execution
    assert handoff_of(aws, customer)["maybeSent"] is True
    studio.answer_delay = 0.0
    studio.end_execution(customer)  # that execution's flow finished meanwhile

    dispatch_app.handler(event, lambda_context)  # Lambda delivers the record again

    handoff_id = event["Records"][0]["dynamodb"]["NewImage"]["handoffId"]["S"]
    assert len([r for r in studio.created if r.to == customer]) == 1, (
        f"handoff {handoff_id} started {len(studio.created)} Studio executions: "
        + ", ".join(r.sid for r in studio.created)
    )
    record = handoff_of(aws, customer)
    assert (record["status"], record["outcome"]) == ("delivered", "found")
    assert record["executionSid"] == studio.created[0].sid
    assert studio.created[0].handoff_data["conversationId"] in record["payload"]
    assert json.loads(studio.created[0].parameters)["handoffId"] == handoff_id  # what it was found by


def test_a_handoff_studio_did_start_is_not_failed_as_overdue_and_the_customer_told_nobody_is_coming(
    aws, studio, twilio_api, lambda_context
):
    """Studio starts the execution but its answer is lost; then its create endpoint answers 503
    until the delivery budget is spent (reads still work). The watchdog must not fail the handoff
    `overdue` (dead letter, "Sorry, we couldn't reach a member of our team", the AI answering
    again) while the execution it started is active and a person is on the way: it finds it."""
    customer = "+14155550404"
    assert "follow up" in texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    lose_studio_answers(studio)
    event = Outbox(aws.dynamodb).next_event()
    dispatch_app.handler(event, lambda_context)
    assert [r.status for r in studio.requests][:1] == [201]  # the first POST did start an execution
    record = handoff_of(aws, customer)
    assert record["status"] == "pending"

    age(aws, record, 3600)  # the delivery budget runs out; the watchdog takes the overdue promise
    wiring.watchdog().run(Deadline.after(20))

    record = handoff_of(aws, customer)
    active = [sid for (flow, to), sid in studio.active.items() if to == customer]
    told = [m["body"] for m in twilio_api.messages if m["to"] == customer]
    assert not (record["status"] == "failed" and active), (
        f"handoff {record['outcome']}: dead-lettered and the customer told {told!r}, "
        f"while Studio execution {active} started for it is active"
    )
    assert (record["status"], record["executionSid"]) == ("delivered", active[0])
    assert told == [] and aws.dead_letters() == []


def test_while_studio_cannot_say_a_possibly_sent_handoff_is_not_posted_again(aws, studio, lambda_context):
    """Studio's Executions list fails (503) when a record that may have been sent comes back: a
    repost could start a second execution, so nothing is posted; the record goes back to the
    stream, and once Studio answers, its execution is found."""
    customer = "+14155550406"
    texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    lose_studio_answers(studio)
    event = Outbox(aws.dynamodb).next_event()
    dispatch_app.handler(event, lambda_context)
    posts = len(studio.requests)

    studio.fail_next(UNAVAILABLE, on="list")
    second = dispatch_app.handler(event, lambda_context)

    assert len(second["batchItemFailures"]) == 1 and len(studio.requests) == posts  # handed back, not posted
    record = handoff_of(aws, customer)
    assert record["status"] == "pending" and "could not say" in record["lastError"]

    assert dispatch_app.handler(event, lambda_context) == {"batchItemFailures": []}
    assert handoff_of(aws, customer)["outcome"] == "found" and len(studio.created) == 1
    assert len(studio.requests) == posts


def test_an_overdue_handoff_studio_cannot_be_asked_about_fails_only_after_a_second_budget(
    aws, studio, twilio_api, lambda_context
):
    """Overdue, possibly sent, and Studio's list keeps failing: telling the customer nobody is
    coming could be wrong, so the watchdog keeps asking for another delivery budget; after that
    it fails the handoff loudly, the dead letter saying an execution may exist."""
    customer = "+14155550407"
    texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    lose_studio_answers(studio)
    dispatch_app.handler(Outbox(aws.dynamodb).next_event(), lambda_context)
    budget = wiring.settings().handoff_delivery_budget_seconds
    studio.end_execution(customer)
    studio.fail_next(*[UNAVAILABLE] * 4, on="list")

    age(aws, handoff_of(aws, customer), budget + 60)
    wiring.watchdog().run(Deadline.after(20))
    record = handoff_of(aws, customer)
    assert record["status"] == "pending" and twilio_api.messages == [] and aws.dead_letters() == []

    age(aws, record, 2 * budget + 60)
    wiring.watchdog().run(Deadline.after(20))

    record = handoff_of(aws, customer)
    assert record["status"] == "failed" and record["outcome"] == "overdue"
    (letter,) = aws.dead_letters()
    assert "may have started an execution" in letter["body"]["reason"] and "may exist" in letter["body"]["reason"]
    assert len(studio.created) == 1  # never posted blindly


# -- one transient store fault: retried; a store that stays down gets an apology ----------------


def throttled(operation: str) -> ClientError:
    """What boto3 raises once its own retries are spent on a throttled request."""
    return ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate of requests exceeds the allowed throughput."}},
        operation,
    )


def once(monkeypatch, client, operation: str, fault: Exception, when, *, after_applying: bool = False) -> list:
    """The first call of `operation` whose arguments match `when` raises `fault` (after reaching moto,
    with `after_applying`: the request was applied and only its answer lost); the rest reach moto."""
    real, calls = getattr(client, operation), []

    def patched(**kwargs):
        matched = not any(first for first, _ in calls) and when(kwargs)
        calls.append((matched, kwargs))
        if matched:
            if after_applying:
                real(**kwargs)
            raise fault
        return real(**kwargs)

    monkeypatch.setattr(client, operation, patched)
    return calls


def _key(kwargs) -> str:
    return kwargs.get("Key", {}).get("pk", {}).get("S", "")


READ_TIMEOUT = ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


@pytest.mark.parametrize(
    "operation, fault, when, after_applying",
    [
        ("get_item", throttled("GetItem"), lambda kw: _key(kw).startswith("CONV#"), False),
        ("update_item", throttled("UpdateItem"), lambda kw: _key(kw).startswith("MSG#"), False),
        ("update_item", READ_TIMEOUT, lambda kw: _key(kw).startswith("MSG#"), True),
        ("transact_write_items", READ_TIMEOUT, lambda kw: True, False),
        ("transact_write_items", READ_TIMEOUT, lambda kw: True, True),
    ],
    ids=[
        "conversation-read-throttled",
        "claim-throttled",
        "claim-applied-answer-lost",
        "commit-read-timeout",
        "commit-applied-answer-lost",
    ],
)
def test_one_transient_store_fault_does_not_leave_a_texter_who_asked_for_a_person_in_silence(
    aws, lambda_context, monkeypatch, operation, fault, when, after_applying
):
    """A single throttle that outlived the SDK's retries (on the conversation's GetItem or the
    claim's UpdateItem), or a read timeout (the request applied or not), used to answer 500, and
    Twilio does not retry a 5xx: the texter who wrote "I need a human" got nothing, ever. Now
    the read, the claim (with its own token, so a repeat finds itself) and the commit (with the
    same ClientRequestToken) are tried again within the deadline: one answer, one handoff."""
    customer = "+14155550403"
    calls = once(monkeypatch, wiring.session_store()._client, operation, fault, when, after_applying=after_applying)

    response = sms_app.handler(webhook("I need a human", customer), lambda_context)

    assert any(matched for matched, _ in calls), "the fault was not injected"
    handoffs = [h for h in aws.items("HANDOFF#") if h["to"] == customer]
    assert texted(response) is not None, (
        f"HTTP {response['statusCode']} to Twilio after one {type(fault).__name__} on {operation}: "
        f"the texter gets nothing and {len(handoffs)} handoff(s) exist"
    )
    assert "follow up" in texted(response) and len(handoffs) == 1
    (message,) = aws.items("MSG#")
    assert message["status"] == "done" and message["reply"] == texted(response)
    if operation == "transact_write_items":  # the repeat is the same commit, under the same token
        tokens = {kwargs["ClientRequestToken"] for _, kwargs in calls}
        assert len(calls) == 2 and len(tokens) == 1


def test_moto_runs_a_repeated_client_request_token_again(aws):
    """DynamoDB answers a repeat of a TransactWriteItems that succeeded (same ClientRequestToken,
    within 10 minutes) with success and applies nothing. moto 5 ignores the token (its
    transact_write_items takes no such argument) and runs the repeat again, which its conditions
    then refuse. So the "commit-applied-answer-lost" case above passes through the service's own
    check of the stored reply, which also covers a repeat that DynamoDB would not recognise."""
    put = {"TableName": sample.TABLE_NAME, "Item": {"pk": {"S": "TEST#token"}}}
    items = [{"Put": {**put, "ConditionExpression": "attribute_not_exists(pk)"}}]
    aws.dynamodb.transact_write_items(TransactItems=items, ClientRequestToken="same-commit")

    with pytest.raises(ClientError) as refused:
        aws.dynamodb.transact_write_items(TransactItems=items, ClientRequestToken="same-commit")

    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"


# -- `make redrive` of an old failure never ends a newer handoff's live execution ----------------


def old_failure_then_a_person(aws, studio, customer, lambda_context):
    """A wrong flow SID (404) failed a handoff; after the fix the customer asked again and reached a person."""
    studio.fail_next(NOT_FOUND)
    assert "follow up" in texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    outbox = Outbox(aws.dynamodb)
    drain(outbox, lambda_context)
    (failed,) = [h for h in aws.items("HANDOFF#") if h["status"] == "failed"]
    assert "follow up" in texted(sms_app.handler(webhook("Please, a real person", customer), lambda_context))
    drain(outbox, lambda_context)
    (live,) = studio.created
    assert studio.active[(sample.FLOW_SID, customer)] == live.sid
    return outbox, failed, live


def test_redriving_an_old_failure_does_not_end_the_customers_live_handoff(aws, studio, twilio_api, lambda_context):
    """The runbook says to redrive the dead-letter queue once the cause is fixed. The redriven copy
    of the old handoff must neither end the execution of the customer's newer handoff (a person
    talking with them now) nor start a second one with the old, already-handled reason: it is
    settled as superseded, with no dead letter."""
    customer = "+14155550405"
    outbox, failed, live = old_failure_then_a_person(aws, studio, customer, lambda_context)

    report = redriver(aws).run()  # without the flow SID: the dispatcher decides
    drain(outbox, lambda_context)

    assert len(report.redriven) == 1
    assert live.sid not in studio.ended, (
        f"the redrive ended the customer's live execution {live.sid} and started "
        f"{[r.sid for r in studio.created if r.sid != live.sid]} for the old handoff"
    )
    assert len(studio.created) == 1
    (copy,) = [h for h in aws.items("HANDOFF#") if h.get("redrivenFrom") == failed["handoffId"]]
    assert (copy["status"], copy["outcome"]) == ("superseded", "superseded") and "promise" not in copy
    assert aws.dead_letters() == []


def test_redrive_knowing_the_flow_skips_a_failure_whose_customer_reached_a_person_since(
    aws, studio, twilio_api, lambda_context, capsys
):
    """`make redrive --stack` knows the flow SID (the stack's parameter): such a failure is not
    written again at all; it is listed as superseded and its dead letter deleted."""
    customer = "+14155550408"
    outbox, failed, live = old_failure_then_a_person(aws, studio, customer, lambda_context)

    report = redriver(aws, flow_sid=sample.FLOW_SID).run()
    drain(outbox, lambda_context)

    assert report.superseded == [failed["handoffId"]] and report.redriven == []
    assert len(aws.items("HANDOFF#")) == 2 and aws.dead_letters() == []  # no copy; the message is gone
    assert studio.ended == [] and [r.sid for r in studio.created] == [live.sid]


def test_a_redriven_copy_that_meets_a_newer_execution_only_studio_knows_of_leaves_it_alone(
    aws, studio, twilio_api, lambda_context
):
    """The contact's record of its last execution is gone (it expires, or predates it): the copy's
    POST meets Studio's 409, and the active execution's date in Studio says it is newer than the
    old handoff's promise. It is not ended; the copy is superseded."""
    customer = "+14155550409"
    outbox, failed, live = old_failure_then_a_person(aws, studio, customer, lambda_context)
    contact = f"STUDIO#{sample.FLOW_SID}#{customer}#{sample.AGENT_NUMBER}"
    aws.dynamodb.delete_item(TableName=sample.TABLE_NAME, Key={"pk": {"S": contact}})

    redriver(aws).run()
    drain(outbox, lambda_context)

    assert [r.status for r in studio.requests if r.to == customer][-1] == 409  # it did post, and met the 409
    assert studio.ended == [] and len(studio.created) == 1
    (copy,) = [h for h in aws.items("HANDOFF#") if h.get("redrivenFrom") == failed["handoffId"]]
    assert copy["status"] == "superseded" and live.sid in copy["lastError"]


# -- a release before the handoff is delivered ---------------------------------------------------


def test_a_conversation_released_before_its_handoff_was_delivered_starts_no_execution(aws, studio, lambda_context):
    """The human side releases the conversation while its handoff is still waiting for the
    dispatcher: nobody must be sent to a conversation that is over."""
    customer = "+14155550411"
    texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    event = Outbox(aws.dynamodb).next_event()

    answer = release(customer, lambda_context)
    assert answer["released"] and answer["execution"] is None
    assert dispatch_app.handler(event, lambda_context) == {"batchItemFailures": []}

    assert studio.requests == []
    record = handoff_of(aws, customer)
    assert (record["status"], record["outcome"]) == ("superseded", "released") and "promise" not in record
    assert aws.dead_letters() == []


def test_an_overdue_handoff_whose_conversation_was_released_is_not_failed(aws, studio, twilio_api, lambda_context):
    """Released while Studio was down, then overdue: the watchdog settles it, rather than dead-letter
    it and text a customer whose conversation is over that nobody could be reached."""
    customer = "+14155550417"
    texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    release(customer, lambda_context)
    age(aws, handoff_of(aws, customer), wiring.settings().handoff_delivery_budget_seconds + 60)

    wiring.watchdog().run(Deadline.after(20))

    record = handoff_of(aws, customer)
    assert (record["status"], record["outcome"]) == ("superseded", "released")
    assert studio.requests == [] and twilio_api.messages == [] and aws.dead_letters() == []


def test_a_release_while_the_execution_is_being_started_ends_it(aws, studio, lambda_context, monkeypatch):
    """The release lands between Studio creating the execution and the dispatcher recording it:
    the release found no execution to end, so the dispatcher, seeing the release when it records
    the delivery, ends the execution it has just started."""
    customer = "+14155550412"
    texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    event = Outbox(aws.dynamodb).next_event()
    http = wiring.studio_client()._http
    real, released = http.request, []

    def create_then_release(method, url, **kwargs):
        answer = real(method, url, **kwargs)
        if method == "POST" and url.endswith("/Executions") and not released:
            released.append(release(customer, lambda_context))
        return answer

    monkeypatch.setattr(http, "request", create_then_release)
    assert dispatch_app.handler(event, lambda_context) == {"batchItemFailures": []}

    (execution,) = studio.created
    assert released[0]["execution"] is None  # the release came before the delivery was recorded
    assert studio.ended == [execution.sid] and studio.active == {}
    record = handoff_of(aws, customer)
    assert record["status"] == "delivered" and record["executionEnded"] is True


# -- Studio answers of the wrong shape ----------------------------------------------------------


@pytest.mark.parametrize(
    "page",
    [
        {"executions": "FN0123"},
        {"executions": ["FN0123"]},
        {"executions": [{"sid": 7, "contact_channel_address": sample.CUSTOMER_NUMBER}]},
        {"executions": [], "meta": ["next"]},
        {"executions": [], "meta": {"next_page_url": 5}},
    ],
    ids=["executions-a-string", "rows-not-objects", "sid-not-a-string", "meta-a-list", "next-url-a-number"],
)
def test_a_malformed_executions_page_is_no_answer_not_a_crash(studio, page):
    client = StudioClient(base_url=studio.base_url, credentials=(sample.ACCOUNT_SID, sample.AUTH_TOKEN))
    studio.fail_next(ScriptedFault(200, page), on="list")

    lookup = client.active_execution(
        flow_sid=sample.FLOW_SID, contact=sample.CUSTOMER_NUMBER, deadline=Deadline.after(5)
    )

    assert lookup.found is None and not lookup.complete and "wrong shape" in lookup.detail


@pytest.mark.parametrize("context", [{"context": []}, {"context": {"flow": "x"}}, {"context": {"flow": {"data": 1}}}])
def test_a_malformed_execution_context_is_no_answer_not_a_crash(studio, context):
    client = StudioClient(base_url=studio.base_url, credentials=(sample.ACCOUNT_SID, sample.AUTH_TOKEN))
    studio.start_foreign(sample.CUSTOMER_NUMBER, sample.FLOW_SID)
    studio.fail_next(ScriptedFault(200, context), on="context")

    lookup = client.active_execution(
        flow_sid=sample.FLOW_SID, contact=sample.CUSTOMER_NUMBER, deadline=Deadline.after(5)
    )

    assert lookup.found is None and not lookup.complete and "wrong shape" in lookup.detail


def test_a_409_studio_answers_nonsense_about_is_handed_back_not_left_leased(aws, studio, lambda_context):
    """The contact is busy and Studio's list is malformed: the record goes back to the stream with
    its lease released and the reason kept, not stuck `dispatching` behind an AttributeError."""
    customer = "+14155550413"
    texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    studio.start_foreign(customer, sample.FLOW_SID)
    studio.fail_next(ScriptedFault(200, {"executions": "nonsense"}), on="list")

    result = dispatch_app.handler(Outbox(aws.dynamodb).next_event(), lambda_context)

    assert len(result["batchItemFailures"]) == 1
    record = handoff_of(aws, customer)
    assert record["status"] == "pending" and "leaseUntil" not in record
    assert "wrong shape" in record["lastError"]


# -- only the lease's holder records an outcome ---------------------------------------------------


def test_a_dispatcher_whose_lease_was_taken_over_cannot_overwrite_the_outcome(aws, studio, twilio_api, lambda_context):
    """A dispatcher stalls past its lease; another takes the record over and delivers it. The first
    then wakes, out of retries, and records a failure: it must not turn the delivered handoff into
    a failed one, lift the customer's hold and text them that nobody is coming."""
    customer = "+14155550414"
    texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    event = Outbox(aws.dynamodb).next_event()
    store = wiring.session_store()
    handoff_id = handoff_of(aws, customer)["handoffId"]
    stalled, owned = store.claim_handoff(handoff_id, now=int(time.time()) - 120, lease_seconds=1)
    assert owned
    assert dispatch_app.handler(event, lambda_context) == {"batchItemFailures": []}  # taken over, delivered
    failures = HandoffFailures(
        store,
        SqsDeadLetters(lambda: aws.sqs, aws.queue_url),
        wiring.customer_messages,
        notice="Sorry, nobody is coming.",
    )

    with pytest.raises(ConcurrentUpdate):
        failures.fail(stalled, "gave_up", "HTTP 503 (delivery 5 of 5)", deadline=Deadline.after(10))

    record = handoff_of(aws, customer)
    assert record["status"] == "delivered" and record["executionSid"] == studio.created[0].sid
    conversation = next(c for c in aws.items("CONV#") if c["customer"] == customer)
    assert conversation["hold"]["until"] > time.time() and "notice" not in conversation["hold"]
    assert twilio_api.messages == []


# -- the failure notice and the AI's reply in one SMS ---------------------------------------------


class Verbose:
    """An agent whose every reply is as long as an SMS can be."""

    def take_turn(self, history, user_text, **kwargs):
        return TurnOutcome(reply="word " * 319 + "last.", handed_off=False, trigger="", unresolved_attempts=0)


def test_the_failure_notice_and_a_long_reply_fit_one_sms_and_history_keeps_what_was_sent(
    aws, studio, twilio_api, lambda_context, monkeypatch
):
    """After a failed handoff the AI's next reply starts with the notice. Together they must fit
    Twilio's 1,600 characters, and what is stored (the reply a retry repeats, the history the
    model reads) is what the texter received, not a longer text TwiML cut short."""
    customer = "+14155550415"
    studio.fail_next(NOT_FOUND)
    texted(sms_app.handler(webhook("I need a human", customer), lambda_context))
    drain(Outbox(aws.dynamodb), lambda_context)
    notice = wiring.settings().handoff_failed_message
    monkeypatch.setattr(wiring.sms_service(), "_agent", Verbose())

    sent = texted(sms_app.handler(webhook("Tell me everything", customer), lambda_context))

    assert len(sent) <= 1600 and sent.startswith(notice)
    message = next(m for m in aws.items("MSG#") if m.get("reply", "").startswith(notice))
    assert message["reply"] == sent
    conversation = next(c for c in aws.items("CONV#") if c["customer"] == customer)
    assert conversation["history"][-1] == {"role": "assistant", "text": sent[len(notice) :].lstrip("\n")}


# -- the SMS handler when the store is down for good ----------------------------------------------


def test_a_store_down_for_the_whole_turn_gets_an_apology_and_the_alarmed_metric(
    aws, lambda_context, monkeypatch, function_logs
):
    """Every DynamoDB call throttled past the SDK's retries, from the first (the claim): the texter
    is told to try again later (no person is promised: nothing was recorded), and the operator's
    StoreUnavailable alarm counts it."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    client = wiring.session_store()._client
    calls = []

    def down(**kwargs):
        calls.append(kwargs)
        raise throttled("UpdateItem")

    monkeypatch.setattr(client, "update_item", down)
    started = time.monotonic()
    response = sms_app.handler(webhook("I need a human", "+14155550416"), lambda_context)

    assert texted(response) == "I'm sorry, I'm having trouble answering right now. Please try again in a few minutes."
    assert len(calls) > 1 and time.monotonic() - started < 15  # tried again, inside Twilio's window
    assert aws.items() == []
    metrics = [json.loads(line) for line in function_logs.readouterr().out.splitlines() if '"_aws"' in line]
    assert any("StoreUnavailable" in m for m in metrics)


def test_the_template_alarms_on_texters_who_got_the_store_apology():
    from devtools.template import resource

    alarm = resource("StoreUnavailableAlarm")["Properties"]
    assert alarm["MetricName"] == "StoreUnavailable"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "inbound-sms"}]
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
