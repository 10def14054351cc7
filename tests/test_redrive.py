"""Redriving the dead-letter queue: failed handoffs reach Studio once the cause is fixed, once."""

from __future__ import annotations

import json

from agent_handoff import wiring
from agent_handoff.delivery.redrive import STUCK_AFTER_SECONDS, Redriver
from conftest import load_handler
from devtools.fakes.studio_recorder import ScriptedFault
from devtools.ops import redrive
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params
from streams import Outbox

sms_app = load_handler("inbound_sms")
dispatch_app = load_handler("handoff_dispatch")


def hand_off(lambda_context, customer):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body="I need a human", customer=customer)
    sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)


def drain(outbox, lambda_context):
    while (event := outbox.next_event()) is not None:
        dispatch_app.handler(event, lambda_context)


def test_failed_handoffs_are_delivered_after_redrive(aws, studio, lambda_context, capsys):
    outbox = Outbox(aws.dynamodb)
    studio.fail_next(*[ScriptedFault(401, {"code": 20003, "message": "Authenticate"})] * 2)  # a rotated token
    for customer in ("+14155550301", "+14155550302"):
        hand_off(lambda_context, customer)
    drain(outbox, lambda_context)
    assert [h["status"] for h in aws.items("HANDOFF#")] == ["failed", "failed"] and studio.created == []
    dlq = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert dlq["Attributes"]["ApproximateNumberOfMessages"] == "2"

    assert redrive.main(["--queue-url", aws.queue_url, "--table", sample.TABLE_NAME, "--dry-run"]) == 0
    assert "would redrive 2 handoff(s)" in capsys.readouterr().out
    assert len(aws.items("HANDOFF#")) == 2  # a dry run changes nothing

    report = Redriver(wiring.session_store(), aws.sqs, aws.queue_url).run()
    drain(outbox, lambda_context)

    assert sorted(report.redriven) == sorted(h["handoffId"] for h in aws.items("HANDOFF#") if h["status"] == "redriven")
    assert sorted(r.to for r in studio.created) == ["+14155550301", "+14155550302"]
    again = [h for h in aws.items("HANDOFF#") if ".r" in h["handoffId"]]
    assert [h["status"] for h in again] == ["delivered", "delivered"]
    assert aws.dead_letters() == []

    second = Redriver(wiring.session_store(), aws.sqs, aws.queue_url).run()
    drain(outbox, lambda_context)
    assert second.redriven == [] and len(studio.created) == 2


def test_records_left_pending_behind_a_stream_failure_are_redriven(aws, studio, lambda_context):
    hand_off(lambda_context, "+14155550303")  # the dispatcher never ran: Lambda gave up on the batch
    aws.sqs.send_message(
        QueueUrl=aws.queue_url,
        MessageBody=json.dumps(
            {"requestContext": {"condition": "RetryAttemptsExhausted"}, "DDBStreamBatchInfo": {"batchSize": 1}}
        ),
    )
    import time

    later = time.time() + STUCK_AFTER_SECONDS + 60
    report = Redriver(wiring.session_store(), aws.sqs, aws.queue_url, clock=lambda: later).run()
    outbox = Outbox(aws.dynamodb)
    drain(outbox, lambda_context)

    assert len(report.redriven) == 1 and [r.to for r in studio.created] == ["+14155550303"]
    assert aws.dead_letters() == []


def test_foreign_messages_stay_in_the_queue(aws):
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody="not a handoff")
    report = Redriver(wiring.session_store(), aws.sqs, aws.queue_url).run()
    assert report.redriven == [] and len(report.skipped) == 1


def test_stack_outputs_name_the_queue_and_table():
    class Fake:
        def describe_stacks(self, StackName):
            return {
                "Stacks": [
                    {
                        "Outputs": [
                            {"OutputKey": "DeadLetterQueueUrl", "OutputValue": "q"},
                            {"OutputKey": "SessionsTableName", "OutputValue": "t"},
                        ]
                    }
                ]
            }

    assert redrive.stack_outputs(Fake(), "s") == {"DeadLetterQueueUrl": "q", "SessionsTableName": "t"}
