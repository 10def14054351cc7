"""Redriving the dead-letter queue: failed handoffs reach Studio once the cause is fixed, once."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from botocore.stub import Stubber

from agent_handoff import wiring
from agent_handoff.delivery.redrive import Redriver
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


def redriver(aws, streams=None):
    return Redriver(wiring.session_store(), aws.sqs, aws.queue_url, streams=streams or boto3.client("dynamodbstreams"))


def queued(aws) -> int:
    attributes = aws.sqs.get_queue_attributes(
        QueueUrl=aws.queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_failed_handoffs_are_delivered_after_redrive(aws, studio, lambda_context, capsys):
    outbox = Outbox(aws.dynamodb)
    studio.fail_next(*[ScriptedFault(401, {"code": 20003, "message": "Authenticate"})] * 2)  # a rotated token
    for customer in ("+14155550301", "+14155550302"):
        hand_off(lambda_context, customer)
    drain(outbox, lambda_context)
    assert [h["status"] for h in aws.items("HANDOFF#")] == ["failed", "failed"] and studio.created == []
    assert queued(aws) == 2

    assert redrive.main(["--queue-url", aws.queue_url, "--table", sample.TABLE_NAME, "--dry-run"]) == 0
    assert "would redrive 2 handoff(s)" in capsys.readouterr().out
    assert len(aws.items("HANDOFF#")) == 2 and queued(aws) == 2  # a dry run changes nothing

    report = redriver(aws).run()
    drain(outbox, lambda_context)

    assert sorted(report.redriven) == sorted(h["handoffId"] for h in aws.items("HANDOFF#") if h["status"] == "redriven")
    assert sorted(r.to for r in studio.created) == ["+14155550301", "+14155550302"]
    again = [h for h in aws.items("HANDOFF#") if ".r" in h["handoffId"]]
    assert [h["status"] for h in again] == ["delivered", "delivered"]
    assert all("promise" not in h for h in aws.items("HANDOFF#"))  # nothing is owed any more
    assert queued(aws) == 0

    second = redriver(aws).run()
    drain(outbox, lambda_context)
    assert second.redriven == [] and len(studio.created) == 2


def test_the_local_failure_record_has_lambdas_shape(aws, lambda_context):
    from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamLambdaOnFailureDestinationModel

    hand_off(lambda_context, "+14155550304")
    outbox = Outbox(aws.dynamodb)
    record = outbox.failure_record(outbox.next_event())

    parsed = DynamoDBStreamLambdaOnFailureDestinationModel.model_validate(record)
    assert parsed.ddb_stream_batch_info.shard_id.startswith("shardId-")
    assert parsed.request_context.condition == "RetryAttemptsExhausted"
    assert "records" not in record and "Records" not in record  # metadata only, as Lambda sends it


def test_a_stream_batch_failure_is_redriven_from_the_stream_whatever_its_age(aws, studio, lambda_context):
    # Issue #12 item 9: the dispatcher died holding the lease, the stream's retries ran out on it.
    hand_off(lambda_context, "+14155550303")
    outbox = Outbox(aws.dynamodb)
    event = outbox.next_event()
    handoff_id = event["Records"][0]["dynamodb"]["NewImage"]["handoffId"]["S"]
    wiring.session_store().claim_handoff(handoff_id, now=int(time.time()), lease_seconds=60)
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(outbox.failure_record(event)))

    report = redriver(aws).run()
    drain(outbox, lambda_context)

    assert report.redriven == [handoff_id] and report.from_index == 0
    assert queued(aws) == 0  # deleted only now that its handoff was written again
    statuses = {h["handoffId"]: h["status"] for h in aws.items("HANDOFF#")}
    assert statuses[handoff_id] == "redriven"
    assert [s for h, s in statuses.items() if h != handoff_id] == ["delivered"]
    assert [r.to for r in studio.created] == ["+14155550303"]


def test_a_batch_already_delivered_is_settled_and_its_message_deleted(aws, studio, lambda_context):
    hand_off(lambda_context, "+14155550305")
    outbox = Outbox(aws.dynamodb)
    event = outbox.next_event()
    dispatch_app.handler(event, lambda_context)
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(outbox.failure_record(event)))

    report = redriver(aws).run()

    assert report.redriven == [] and len(report.settled) == 1 and queued(aws) == 0
    assert len(studio.created) == 1


def aged_out_streams(code="TrimmedDataAccessException", message="the records are no longer in the stream"):
    streams = boto3.client("dynamodbstreams")
    stubber = Stubber(streams)
    stubber.add_client_error(
        "get_shard_iterator", service_error_code=code, service_message=message, http_status_code=400
    )
    stubber.activate()
    return streams


def test_when_the_stream_dropped_the_batch_the_promises_index_finds_what_is_owed(aws, studio, lambda_context):
    outbox = Outbox(aws.dynamodb)
    for customer in ("+14155550306", "+14155550307"):
        hand_off(lambda_context, customer)
    event = outbox.next_event()
    first, _ = (r["dynamodb"]["NewImage"]["handoffId"]["S"] for r in event["Records"])
    dispatch_app.handler({"Records": event["Records"][1:]}, lambda_context)  # the second was delivered
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(outbox.failure_record(event)))

    report = redriver(aws, streams=aged_out_streams()).run()
    drain(outbox, lambda_context)

    assert report.from_index == 1 and report.redriven == [first]
    assert sorted(r.to for r in studio.created) == ["+14155550306", "+14155550307"]
    assert queued(aws) == 0


def test_a_stream_that_cannot_be_read_leaves_the_message_for_later(aws, studio, lambda_context):
    hand_off(lambda_context, "+14155550308")
    outbox = Outbox(aws.dynamodb)
    event = outbox.next_event()
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(outbox.failure_record(event)))
    before = aws.items("HANDOFF#")

    report = redriver(aws, streams=aged_out_streams("InternalServerError", "try again")).run()

    assert report.redriven == [] and "InternalServerError" in report.skipped[0]
    assert queued(aws) == 1 and aws.items("HANDOFF#") == before


@pytest.mark.parametrize("body", ["not a handoff", json.dumps({"DDBStreamBatchInfo": "x"}), json.dumps([1])])
def test_foreign_messages_stay_in_the_queue(aws, body):
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)
    report = redriver(aws).run()
    assert report.redriven == [] and len(report.skipped) == 1
    assert queued(aws) == 1


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


def test_the_stack_s_parameters_name_the_flow_redrive_checks_newer_handoffs_against():
    class Fake:
        def describe_stacks(self, StackName):
            parameters = [{"ParameterKey": "StudioHandoffFlowSid", "ParameterValue": sample.FLOW_SID}]
            return {"Stacks": [{"Parameters": parameters, "Outputs": []}]}

    assert redrive.stack_parameters(Fake(), "s") == {"StudioHandoffFlowSid": sample.FLOW_SID}
