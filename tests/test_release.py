"""HandoffReleaseFunction: the human is done, the AI answers again; nobody else may release."""

from __future__ import annotations

import base64
import json

import pytest

from conftest import load_handler
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params

sms_app = load_handler("inbound_sms")
release_app = load_handler("handoff_release")


def text(body, lambda_context, customer=sample.CUSTOMER_NUMBER):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=body, customer=customer)
    return sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)


def release(lambda_context, *, authorization=f"Bearer {sample.RELEASE_TOKEN}", body=None, form=False, **fields):
    fields = fields or {"customer": sample.CUSTOMER_NUMBER, "agentNumber": sample.AGENT_NUMBER}
    if form:
        event = http_api_event("/handoff/release", fields, auth_token=None)
    else:
        event = http_api_event(
            "/handoff/release",
            {},
            auth_token=None,
            content_type="application/json",
            body=body if body is not None else json.dumps(fields),
        )
    if authorization is not None:
        event["headers"]["authorization"] = authorization
    response = release_app.handler(event, lambda_context)
    return response["statusCode"], json.loads(response["body"])


def basic(password):
    return "Basic " + base64.b64encode(f"studio:{password}".encode()).decode()


def test_released_conversation_gets_ai_answers_again(aws, lambda_context):
    text("I need a human", lambda_context)
    assert "<Message>" not in text("hello?", lambda_context)["body"]
    held = aws.items("CONV#")[0]

    status, body = release(lambda_context)

    assert (status, body) == (200, {"released": True, "handoffId": held["hold"]["handoffId"], "execution": None})
    answer = text("what are your opening hours?", lambda_context)["body"]
    assert "Monday" in answer
    conversation = aws.items("CONV#")[0]
    assert conversation["conversationId"] != held["conversationId"]  # a new conversation for the AI
    assert "hold" not in conversation or conversation["hold"]["until"] <= conversation["updatedAt"]


def test_release_from_a_studio_form_with_basic_auth(aws, lambda_context):
    text("agent please", lambda_context)
    assert release(lambda_context, authorization=basic(sample.RELEASE_TOKEN), form=True)[0] == 200


def test_nothing_to_release_is_404_and_releasing_twice_is_harmless(aws, lambda_context):
    assert release(lambda_context)[0] == 404
    text("I need a human", lambda_context)
    assert release(lambda_context)[0] == 200
    assert release(lambda_context)[0] == 404


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token-wrong-token-wrong",
        basic("wrong-token-wrong-token-wrong"),
        "Basic !!!notbase64",
        f"Token {sample.RELEASE_TOKEN}",
        f"Bearer {sample.AUTH_TOKEN}",
    ],
)
def test_wrong_credentials_are_refused_and_change_nothing(aws, lambda_context, authorization):
    text("I need a human", lambda_context)
    before = aws.items()

    status, body = release(lambda_context, authorization=authorization)

    assert status == 403 and sample.RELEASE_TOKEN not in json.dumps(body)
    assert aws.items() == before


def test_release_is_refused_when_no_token_is_configured(aws, lambda_context, monkeypatch):
    from agent_handoff import wiring

    monkeypatch.delenv("HANDOFF_RELEASE_TOKEN")
    wiring.reset()
    status, body = release(lambda_context)
    assert status == 403 and "not configured" in body["error"]


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        ({"customer": "14155550100", "agentNumber": sample.AGENT_NUMBER}, None),
        ({"customer": sample.CUSTOMER_NUMBER}, None),
        ({"customer": sample.CUSTOMER_NUMBER, "agentNumber": sample.AGENT_NUMBER, "channel": "voice"}, None),
        ({"x": "y"}, "[1, 2]"),
        ({"x": "y"}, "{not json"),
    ],
)
def test_bad_release_bodies_are_400(aws, lambda_context, fields, body):
    assert release(lambda_context, body=body, **fields)[0] == 400
