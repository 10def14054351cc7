"""Studio's 409 after a release (issue #12 item 7): a new handoff reaches a person, or fails loudly.

Studio keeps one active execution per contact and its 409 names none. A release ends the
execution its handoff started; a 409 is read as "delivered" only when the active execution
serves this conversation; a stale one of ours is ended and the handoff posted once more; one
this product did not start is never touched, and the handoff fails with a dead letter.
"""

from __future__ import annotations

import json

import pytest

from agent_handoff import wiring
from conftest import load_handler
from devtools.fakes.studio_recorder import ScriptedFault
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params
from streams import Outbox

sms_app = load_handler("inbound_sms")
dispatch_app = load_handler("handoff_dispatch")
release_app = load_handler("handoff_release")

HACKED = "Someone hacked my account, I need a person now"


def text(body, lambda_context, customer=sample.CUSTOMER_NUMBER):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=body, customer=customer)
    return sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)["body"]


def release(lambda_context):
    body = json.dumps({"customer": sample.CUSTOMER_NUMBER, "agentNumber": sample.AGENT_NUMBER})
    event = http_api_event("/handoff/release", {}, auth_token=None, content_type="application/json", body=body)
    event["headers"]["authorization"] = f"Bearer {sample.RELEASE_TOKEN}"
    response = release_app.handler(event, lambda_context)
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def outbox(aws):
    return Outbox(aws.dynamodb)


def drain(outbox, lambda_context):
    results = []
    while (event := outbox.next_event()) is not None:
        results.append(dispatch_app.handler(event, lambda_context))
    return results


def handoff(aws, reason_word):
    (record,) = [h for h in aws.items("HANDOFF#") if reason_word in h["payload"]]
    return record


def first_handoff_then_release(aws, studio, outbox, lambda_context):
    text("I need a human", lambda_context)
    drain(outbox, lambda_context)
    (first,) = studio.created
    return first


def test_release_ends_the_execution_and_the_next_handoff_reaches_a_person(aws, studio, outbox, lambda_context):
    first = first_handoff_then_release(aws, studio, outbox, lambda_context)

    status, body = release(lambda_context)

    assert status == 200
    assert body["execution"] == {"sid": first.sid, "ended": True, "detail": f"ended {first.sid}"}
    assert studio.ended == [first.sid] and studio.execution(first.sid).state == "ended"
    released = aws.items("HANDOFF#")[0]
    assert released["executionEnded"] is True and released["executionSid"] == first.sid

    text(HACKED, lambda_context)
    assert drain(outbox, lambda_context) == [{"batchItemFailures": []}]

    second = handoff(aws, "Account security")
    assert second["status"] == "delivered" and second["outcome"] == "created"
    assert [r.status for r in studio.requests] == [201, 201]  # no 409 on the way
    assert studio.created[1].handoff_data["attributes"]["reason"] == second_reason(second)
    assert aws.dead_letters() == []


def second_reason(record):
    return json.loads(record["payload"])["attributes"]["reason"]


def test_a_release_that_could_not_end_it_is_made_good_by_the_next_dispatch(aws, studio, outbox, lambda_context):
    first = first_handoff_then_release(aws, studio, outbox, lambda_context)
    studio.fail_next(ScriptedFault(503), ScriptedFault(503), on="end")

    status, body = release(lambda_context)

    assert status == 200 and body["released"] is True  # the hold is released whatever Studio says
    assert body["execution"]["sid"] == first.sid and body["execution"]["ended"] is False
    assert "503" in body["execution"]["detail"]
    assert aws.items("HANDOFF#")[0]["executionEnded"] is False
    assert studio.active == {(sample.FLOW_SID, sample.CUSTOMER_NUMBER): first.sid}

    text(HACKED, lambda_context)
    drain(outbox, lambda_context)

    second = handoff(aws, "Account security")
    assert second["status"] == "delivered" and second["outcome"] == "created"
    assert [r.status for r in studio.requests] == [201, 409, 201]  # posted once more after ending the stale one
    assert studio.ended == [first.sid]
    assert len(studio.created) == 2 and studio.created[1].to == sample.CUSTOMER_NUMBER
    contact = aws.items("STUDIO#")[0]
    assert contact["executionSid"] == studio.created[1].sid and contact["handoffId"] == second["handoffId"]


def test_a_stale_execution_only_studio_knows_of_is_found_by_its_handoff_data(aws, studio, outbox, lambda_context):
    first = first_handoff_then_release(aws, studio, outbox, lambda_context)
    studio.fail_next(ScriptedFault(503), ScriptedFault(503), on="end")
    release(lambda_context)
    # As for a contact whose execution was started before this product recorded contacts.
    aws.dynamodb.delete_item(TableName=sample.TABLE_NAME, Key={"pk": {"S": aws.items("STUDIO#")[0]["pk"]}})

    text(HACKED, lambda_context)
    drain(outbox, lambda_context)

    assert handoff(aws, "Account security")["outcome"] == "created"
    assert studio.ended == [first.sid] and len(studio.created) == 2


def test_an_execution_this_product_did_not_start_is_never_ended(
    aws, studio, outbox, lambda_context, function_logs, monkeypatch
):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    foreign = studio.start_foreign(sample.CUSTOMER_NUMBER, sample.FLOW_SID)  # say, the customer's call in the flow
    text("I need a human", lambda_context)
    function_logs.readouterr()

    drain(outbox, lambda_context)

    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "failed" and record["outcome"] == "contact_busy"
    assert foreign in record["lastError"]
    assert studio.ended == [] and studio.active == {(sample.FLOW_SID, sample.CUSTOMER_NUMBER): foreign}
    (letter,) = aws.dead_letters()
    assert letter["body"]["reason"].startswith("contact_busy:")
    assert "DispatchFailures" in metric_names(function_logs.readouterr().out)
    assert "<Message>" in text("hello?", lambda_context)  # the hold was lifted: nobody is coming


def test_still_busy_after_ending_the_stale_one_fails_loudly(aws, studio, outbox, lambda_context):
    first = first_handoff_then_release(aws, studio, outbox, lambda_context)
    studio.fail_next(ScriptedFault(503), ScriptedFault(503), on="end")
    release(lambda_context)
    text(HACKED, lambda_context)
    studio.fail_next(ScriptedFault(409, {"code": 20409, "message": "already active"}), on="create")
    studio.fail_next(ScriptedFault(409, {"code": 20409, "message": "already active"}), on="create")

    drain(outbox, lambda_context)

    second = handoff(aws, "Account security")
    assert second["status"] == "failed" and second["outcome"] == "contact_busy"
    assert f"ended stale execution {first.sid}" in second["lastError"]
    assert [letter["body"]["handoffId"] for letter in aws.dead_letters()] == [second["handoffId"]]
    assert len(studio.created) == 1  # the retry was posted once, not in a loop


def test_a_409_studio_cannot_explain_is_retried_later_not_called_delivered(aws, studio, outbox, lambda_context):
    foreign = studio.start_foreign(sample.CUSTOMER_NUMBER, sample.FLOW_SID)
    studio.fail_next(ScriptedFault(503), on="list")
    text("I need a human", lambda_context)
    event = outbox.next_event()

    first = dispatch_app.handler(event, lambda_context)

    assert len(first["batchItemFailures"]) == 1
    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "pending" and "could not say" in record["lastError"]
    studio.end_execution(sample.CUSTOMER_NUMBER)  # the call's flow finished
    assert foreign not in studio.active.values()

    assert dispatch_app.handler(event, lambda_context) == {"batchItemFailures": []}
    assert aws.items("HANDOFF#")[0]["outcome"] == "created" and len(studio.created) == 1


def test_listing_follows_studios_pages_to_the_contact(aws, studio, lambda_context):
    from agent_handoff.deadline import Deadline
    from agent_handoff.delivery import studio as studio_module

    for n in range(studio_module.LIST_PAGE_SIZE + 3):  # other contacts' executions fill the first page
        studio.start_foreign(f"+1628{n:07d}", sample.FLOW_SID)
    text("I need a human", lambda_context)
    drain(Outbox(aws.dynamodb), lambda_context)
    (mine,) = studio.created

    lookup = wiring.studio_client().active_execution(
        flow_sid=sample.FLOW_SID, contact=sample.CUSTOMER_NUMBER, deadline=Deadline.after(10)
    )

    assert lookup.complete and lookup.found.sid == mine.sid
    assert lookup.found.conversation_id == mine.handoff_data["conversationId"]


def metric_names(output):
    lines = [json.loads(line) for line in output.splitlines() if '"_aws"' in line]
    return [d["Name"] for line in lines for d in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
