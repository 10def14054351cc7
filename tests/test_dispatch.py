"""HandoffDispatchFunction on moto's stream and a loopback Studio: at least once, never twice."""

from __future__ import annotations

import json

import pytest

from agent_handoff.deadline import Deadline
from conftest import load_handler
from devtools.fakes.studio_recorder import ScriptedFault
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params
from streams import Outbox

sms_app = load_handler("inbound_sms")
dispatch_app = load_handler("handoff_dispatch")


def ask_for_human(lambda_context, customer=sample.CUSTOMER_NUMBER, text="Can I speak to a human?"):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=text, customer=customer)
    response = sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)
    assert response["statusCode"] == 200
    return params


@pytest.fixture
def outbox(aws):
    return Outbox(aws.dynamodb)


def deliver(outbox, lambda_context, event=None):
    event = event or outbox.next_event()
    assert event is not None, "the outbox produced no stream record"
    return event, dispatch_app.handler(event, lambda_context)


def test_handoff_reaches_studio_with_the_contract_fields(aws, studio, outbox, lambda_context):
    ask_for_human(lambda_context)

    _, result = deliver(outbox, lambda_context)

    assert result == {"batchItemFailures": []}
    (execution,) = studio.requests
    assert execution.status == 201
    assert execution.flow_sid == sample.FLOW_SID
    assert execution.to == sample.CUSTOMER_NUMBER and execution.from_ == sample.AGENT_NUMBER
    assert execution.username == sample.ACCOUNT_SID  # Basic auth with the account when no API key is set
    data = execution.handoff_data
    assert set(data) == {"conversationId", "storeId", "profileId", "attributes"}
    (record,) = aws.items("HANDOFF#")
    # TAC flows read flow.data.HandoffData; the handoff's id rides beside it, to find a lost answer's execution.
    assert json.loads(execution.parameters) == {"HandoffData": data, "handoffId": record["handoffId"]}
    assert data["attributes"]["reason"] == "The customer asked to speak with a human agent."
    assert data["conversationId"] == aws.items("CONV#")[0]["conversationId"]
    (record,) = aws.items("HANDOFF#")
    assert record["status"] == "delivered" and record["outcome"] == "created"
    assert record["executionSid"] == execution.sid


def test_only_handoff_inserts_reach_the_dispatcher(aws, outbox, lambda_context):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body="hello")
    sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)

    assert outbox.next_event() is None


def test_redelivered_record_starts_no_second_execution(aws, studio, outbox, lambda_context):
    ask_for_human(lambda_context)
    event, _ = deliver(outbox, lambda_context)
    studio.end_execution(sample.CUSTOMER_NUMBER)  # even with no active execution to answer 409

    _, result = deliver(outbox, lambda_context, event)

    assert result == {"batchItemFailures": []}
    assert len(studio.requests) == 1


def test_api_key_is_used_when_configured(aws, studio, outbox, lambda_context, monkeypatch):
    from agent_handoff import wiring

    key, secret = "SK" + "1" * 32, "api-key-secret-value"
    studio.username, studio.password = key, secret
    monkeypatch.setenv("TWILIO_API_KEY", key)
    monkeypatch.setenv("TWILIO_API_SECRET", secret)
    wiring.reset()
    ask_for_human(lambda_context)

    deliver(outbox, lambda_context)

    assert studio.requests[0].username == key and studio.requests[0].status == 201


@pytest.mark.parametrize(
    "fault",
    [
        ScriptedFault(429, {"code": 20429, "message": "Too Many Requests"}, headers={"Retry-After": "0"}),
        ScriptedFault(500, {"message": "Internal"}),
        ScriptedFault(503, {"message": "Unavailable"}),
    ],
    ids=["429", "500", "503"],
)
def test_transient_failures_are_retried_within_the_invocation(aws, studio, outbox, lambda_context, fault, monkeypatch):
    monkeypatch.setattr("agent_handoff.delivery.studio.time.sleep", lambda seconds: None)
    from agent_handoff import wiring

    wiring.reset()
    studio.fail_next(fault)
    ask_for_human(lambda_context)

    _, result = deliver(outbox, lambda_context)

    assert result == {"batchItemFailures": []}
    assert [r.status for r in studio.requests] == [fault.status, 201]
    assert aws.items("HANDOFF#")[0]["status"] == "delivered"


def test_a_lost_answer_then_409_is_this_handoffs_own_execution(aws, studio, outbox, lambda_context):
    # Studio created the execution but its answer came after the client's timeout; the retry meets 409.
    studio.answer_delay = 1.5
    ask_for_human(lambda_context)
    from agent_handoff import wiring

    wiring.studio_client()._http._read = 0.5  # the client gives up on the answer first

    _, result = deliver(outbox, lambda_context)

    assert result == {"batchItemFailures": []}
    assert [r.status for r in studio.requests] == [201, 409]
    (record,) = aws.items("HANDOFF#")
    assert record["status"] == "delivered" and record["outcome"] == "already_active"
    assert record["executionSid"] == studio.created[0].sid  # found through Studio, by this conversation's id
    assert studio.ended == [] and aws.dead_letters() == []


@pytest.mark.parametrize("status", [400, 401, 404])
def test_permanent_failure_is_dead_lettered_with_its_reason(aws, studio, outbox, lambda_context, status):
    studio.fail_next(ScriptedFault(status, {"code": 20000 + status, "message": "no such flow"}))
    ask_for_human(lambda_context)

    _, result = deliver(outbox, lambda_context)

    assert result == {"batchItemFailures": []}  # handled: the record is in the DLQ, not retried forever
    assert len(studio.requests) == 1
    (record,) = aws.items("HANDOFF#")
    assert record["status"] == "failed" and record["outcome"] == "permanent_error"
    assert f"HTTP {status}" in record["lastError"]
    (letter,) = aws.dead_letters()
    assert letter["body"]["handoffId"] == record["handoffId"]
    assert letter["body"]["reason"].startswith(f"permanent_error: HTTP {status}")
    assert json.loads(letter["body"]["payload"])["attributes"]["reason"]
    assert letter["attributes"]["reason"]["StringValue"].startswith("permanent_error")


def test_a_studio_outage_goes_back_to_the_stream_then_to_the_watchdog_and_fails_only_past_its_budget(
    aws, studio, outbox, lambda_context, monkeypatch
):
    """Transient failures are bounded in time, not tries: a few minutes of 503s lose nobody."""
    from agent_handoff import wiring

    monkeypatch.setattr("agent_handoff.delivery.studio.time.sleep", lambda seconds: None)
    monkeypatch.setenv("STUDIO_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("DISPATCH_MAX_DELIVERIES", "2")
    wiring.reset()
    studio.fail_next(*[ScriptedFault(503)] * 6)
    ask_for_human(lambda_context)
    event = outbox.next_event()
    sequence = event["Records"][0]["dynamodb"]["SequenceNumber"]

    _, first = deliver(outbox, lambda_context, event)

    assert first == {"batchItemFailures": [{"itemIdentifier": sequence}]}
    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "pending" and record["deliveries"] == 1 and "503" in record["lastError"]
    assert aws.dead_letters() == []

    _, second = deliver(outbox, lambda_context, event)  # Lambda retries the failed record

    # The stream has tried enough: the record waits for the watchdog, pending and promised.
    assert second == {"batchItemFailures": []}
    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "pending" and record["promise"] == "handoff" and "503" in record["lastError"]
    assert aws.dead_letters() == [] and studio.created == []

    # The watchdog's first try within the budget: still 503, handed back again.
    deferred = wiring.dispatcher().recover(record["handoffId"], deadline=Deadline.after(20))
    assert (deferred.status, deferred.outcome) == ("deferred", "transient")
    assert aws.items("HANDOFF#")[0]["status"] == "pending" and aws.dead_letters() == []

    # Past the delivery budget the watchdog fails it loudly, with its last error.
    monkeypatch.setenv("HANDOFF_DELIVERY_BUDGET_SECONDS", "60")
    wiring.reset()
    aws.dynamodb.update_item(
        TableName=sample.TABLE_NAME,
        Key={"pk": {"S": record["pk"]}},
        UpdateExpression="SET createdAt = :long_ago",
        ExpressionAttributeValues={":long_ago": {"N": str(record["createdAt"] - 3600)}},
    )
    failed = wiring.dispatcher().recover(record["handoffId"], deadline=Deadline.after(20))

    assert (failed.status, failed.outcome) == ("failed", "overdue")
    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "failed" and record["outcome"] == "overdue"
    (letter,) = aws.dead_letters()
    assert letter["body"]["reason"].startswith("overdue: ") and "503" in letter["body"]["reason"]
    assert len(studio.requests) == 6 and studio.created == []


def test_unreachable_studio_is_a_transient_failure(aws, studio, outbox, lambda_context, monkeypatch):
    from agent_handoff import wiring

    monkeypatch.setattr("agent_handoff.delivery.studio.time.sleep", lambda seconds: None)
    monkeypatch.setenv("STUDIO_BASE_URL", "http://127.0.0.1:9")  # discard port: connection refused
    wiring.reset()
    ask_for_human(lambda_context)

    _, result = deliver(outbox, lambda_context)

    assert len(result["batchItemFailures"]) == 1
    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "pending" and "network error" in record["lastError"]


def test_many_customers_each_get_exactly_one_execution(aws, studio, outbox, lambda_context):
    customers = [f"+1415555{n:04d}" for n in range(12)]
    for customer in customers:
        ask_for_human(lambda_context, customer=customer)
        ask_for_human(lambda_context, customer=customer, text="hello??")  # on hold: no second handoff

    while (event := outbox.next_event()) is not None:
        assert len(event["Records"]) <= 10
        deliver(outbox, lambda_context, event)

    assert sorted(r.to for r in studio.created) == sorted(customers)
    assert len(studio.requests) == len(customers)


def test_failed_dispatch_emits_the_alarmed_metric(aws, studio, outbox, lambda_context, function_logs, monkeypatch):
    import json as json_

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    studio.fail_next(ScriptedFault(404, {"code": 20404, "message": "no such flow"}))
    ask_for_human(lambda_context)
    function_logs.readouterr()

    deliver(outbox, lambda_context)

    emf = [json_.loads(line) for line in function_logs.readouterr().out.splitlines() if '"_aws"' in line]
    names = [d["Name"] for record in emf for d in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert "DispatchFailures" in names
