"""Faults between the steps: a handoff the customer was told about is never lost or doubled."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from agent_handoff import wiring
from agent_handoff.sms import service as sms_service
from agent_handoff.sms.service import SmsService
from conftest import load_handler
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params
from streams import Outbox

sms_app = load_handler("inbound_sms")
dispatch_app = load_handler("handoff_dispatch")


def human_event():
    params = sms_params(account_sid=sample.ACCOUNT_SID, body="I need a human")
    return http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN)


def test_lambda_dying_after_the_commit_but_before_the_reply(aws, studio, lambda_context, monkeypatch):
    event = human_event()
    real_handle = SmsService.handle

    def commit_then_die(self, message, **kwargs):
        real_handle(self, message, **kwargs)
        raise SystemExit("the runtime was killed before the TwiML went out")

    monkeypatch.setattr(SmsService, "handle", commit_then_die)
    with pytest.raises(SystemExit):
        sms_app.handler(event, lambda_context)
    monkeypatch.setattr(SmsService, "handle", real_handle)

    retried = sms_app.handler(event, lambda_context)  # Twilio's retry of the same MessageSid

    assert retried["statusCode"] == 200 and "person will follow up" in retried["body"]
    outbox = Outbox(aws.dynamodb)
    while (batch := outbox.next_event()) is not None:
        dispatch_app.handler(batch, lambda_context)
    assert len(aws.items("HANDOFF#")) == 1 and len(studio.created) == 1


@pytest.mark.parametrize(
    "fault",
    [
        ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem"
        ),
        ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem"),
        ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    ],
    ids=["throughput", "throttling", "read-timeout"],
)
def test_dynamodb_failing_under_the_dispatcher_loses_nothing(aws, studio, lambda_context, monkeypatch, fault):
    sms_app.handler(human_event(), lambda_context)
    event = Outbox(aws.dynamodb).next_event()
    client = wiring.session_store()._client
    real_update = client.update_item

    def failing(**kwargs):
        raise fault

    monkeypatch.setattr(client, "update_item", failing)
    first = dispatch_app.handler(event, lambda_context)
    assert len(first["batchItemFailures"]) == 1  # Lambda keeps the record and delivers it again
    assert studio.requests == [] and aws.items("HANDOFF#")[0]["status"] == "pending"

    monkeypatch.setattr(client, "update_item", real_update)
    second = dispatch_app.handler(event, lambda_context)

    assert second == {"batchItemFailures": []}
    assert len(studio.created) == 1 and aws.items("HANDOFF#")[0]["status"] == "delivered"


def test_dynamodb_timing_out_on_every_commit_gets_the_texter_an_apology_not_a_500(
    aws, lambda_context, monkeypatch, function_logs
):
    """Twilio does not retry a 5xx, so a 500 would leave the texter in silence for good. Each send of
    the commit times out: it is sent again under the same idempotency token (the lost answer may
    hide an applied commit) until the deadline, then the texter gets an honest apology (nothing was
    recorded, so no person is promised) and the operator an alarmed metric."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    event = human_event()
    client = wiring.session_store()._client
    sends = []

    def timing_out(**kwargs):
        sends.append(kwargs)
        raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    monkeypatch.setattr(client, "transact_write_items", timing_out)
    monkeypatch.setattr(wiring.sms_service(), "_sleep", lambda seconds: None)
    response = sms_app.handler(event, lambda_context)

    assert response["statusCode"] == 200
    assert "try again in a few minutes" in response["body"] and "person" not in response["body"]
    assert len(sends) == sms_service.MAX_COMMIT_SENDS
    assert len({send["ClientRequestToken"] for send in sends}) == 1  # every send is the same commit
    assert aws.items() == []  # the claim was released: nothing half-done, nothing promised
    metrics = [json.loads(line) for line in function_logs.readouterr().out.splitlines() if '"_aws"' in line]
    assert [m["StoreUnavailable"] for m in metrics if "StoreUnavailable" in m] in ([[1.0]], [1.0])  # counted once
